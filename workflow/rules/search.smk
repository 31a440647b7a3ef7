# The searches the papers register (REGISTRY.searches; KTG's graphs, TAKD's tau/lambda when
# takd.hyper_search is set; kdrepro.search): D worker jobs per study share one Optuna journal
# under results/<setting>/search/<study>/, then a checkpoint exports the best choice. The runs
# trained with that choice exist only once best.json does: the targets that read a search name
# them through `deferred_metrics`, an input function that waits on its checkpoint and returns the
# metrics of the runs its result adds; the train rule finds their specs through REGISTRY.spec,
# which reads the same best.json. A TAKD search whose teacher is a searched TA waits on the TA's
# search (Search.after) before its workers know which run to load. Snakemake re-evaluates the DAG
# when a checkpoint finishes; a later invocation finds best.json at parse time and needs no wait.


include: "search_common.smk"


rule search_worker:
    input:
        setting=f"{RESULTS}/setting.json",
        pretrained=search_pretrained,
    output:
        search_path("{study}", "worker{worker}.done"),
    log:
        f"{RESULTS}/logs/search/{{study}}/worker{{worker}}.log",
    conda:
        "../envs/kdrepro.yaml"
    threads: config["threads_per_job"]
    resources:
        **train_device_resources(),
        runtime=search_runtime,
        train_slot=1,
    params:
        device=config["device"],
    shell:
        "kdrepro search {wildcards.study} --worker {wildcards.worker} --configfile {input.setting}"
        " --device {params.device} --threads {threads} > {log} 2>&1"


checkpoint search_best:
    input:
        setting=f"{RESULTS}/setting.json",
        workers=search_workers,
    output:
        best=search_path("{study}", "best.json"),
        trials=search_path("{study}", "trials.csv"),
    log:
        f"{RESULTS}/logs/search/{{study}}/export.log",
    localrule: True
    conda:
        "../envs/kdrepro.yaml"
    shell:
        "kdrepro search {wildcards.study} --export --configfile {input.setting} > {log} 2>&1"
