# One rule per table, figure and the claims report, generated from the registry, plus one
# rule per paper that builds all of its targets (`snakemake takd`). A target's inputs are the
# metrics of its runs, the results of the searches it reads and the files it declares (the
# claims read Table 5's measured speed-ups, say).


rule setting_file:
    output:
        f"{RESULTS}/setting.json",
    log:
        f"{RESULTS}/logs/setting.log",
    localrule: True
    conda:
        "../envs/kdrepro.yaml"
    params:
        # without the image folders' roots and the teachers' paths (the jobs have them from the environment):
        # moving the images or a teacher's file, or linking them elsewhere, changes no search's or target's input
        config=json.dumps(without_teacher_paths(without_roots(config)), sort_keys=True),
    shell:
        "printf '%s\\n' {params.config:q} > {output} 2> {log}"


for target in REGISTRY.targets.values():

    rule:
        name:
            target.name
        input:
            setting=f"{RESULTS}/setting.json",
            metrics=[run_file(run, "metrics.json") for run in static_runs(target)],
            searched=deferred_metrics(target.name),
            declared=target.inputs,
        output:
            [
                (
                    report(
                        path,
                        category=target.paper,
                        subcategory=target.kind,
                        caption="../report/target.rst",
                    )
                    if in_report(target, path)
                    else path
                )
                for path in target.outputs
            ],
        log:
            f"{RESULTS}/logs/render/{target.name}.log",
        localrule: True
        conda:
            "../envs/kdrepro.yaml"
        params:
            target=target.name,
        shell:
            "kdrepro render {params.target} --configfile {input.setting} > {log} 2>&1"


for paper, names in REGISTRY.papers().items():
    if paper == "all":
        continue

    rule:
        name:
            paper
        input:
            [path for name in names for path in REGISTRY.targets[name].outputs],
        localrule: True
