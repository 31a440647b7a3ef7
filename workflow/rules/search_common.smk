# Functions of the KTG search rules (workflow/rules/search.smk); see there.
from snakemake.exceptions import IncompleteCheckpointException

from kdrepro.cluster import estimate_minutes, runtime_limit
from kdrepro.papers import ktg as ktg_paper
from kdrepro.search import Graph

SEARCHES = ktg_paper.searches(REGISTRY)


wildcard_constraints:
    study=r"[A-Za-z0-9_]+",
    worker=r"[0-9]+",


def search_path(study, name):
    return f"{RESULTS}/search/{study}/{name}"


def search_pretrained(wildcards):
    """The pre-trained runs a trial may freeze."""
    return [
        run_file(run, "checkpoint.pt")
        for run in ktg_paper.search_dependencies(REGISTRY, wildcards.study)
    ]


def search_workers(wildcards):
    return [
        search_path(wildcards.study, f"worker{i}.done")
        for i in range(SEARCHES[wildcards.study].workers)
    ]


def search_runtime(wildcards, attempt):
    """SLURM minutes of one worker: its share of the T trials, each at most a full trial."""
    search = SEARCHES[wildcards.study]
    probe = search.make_spec(
        Graph.all_through([search.target_model] * search.node_count),
        0,
        f"{search.name}/probe",
    )
    share = -(-search.trials // search.workers)
    return runtime_limit(share * estimate_minutes(probe, config["device"]), attempt)


def deferred_metrics(target_name):
    """Input function of a target that reads searched graphs (KTG tables, figures, claims); []
    for the other targets. The runs come from best.json as the finished checkpoint wrote it,
    which may differ from the file found at parse time: a search that ran again chose again.
    """
    studies = ktg_paper.deferred_studies(REGISTRY, target_name)
    if not studies:
        return []
    # each file once in the rule's inputs, whichever way it came: Snakemake compares the recorded
    # input list, duplicates included, with the next one's
    listed = set(static_runs(REGISTRY.targets[target_name]))

    def inputs(wildcards):
        paths, pending = [], []
        for study in studies:
            try:
                best = checkpoints.search_best.get(study=study).output
            except IncompleteCheckpointException as err:
                pending.append(err)
                continue
            runs = ktg_paper.deferred_runs(REGISTRY, study)
            for (
                run
            ) in runs:  # a cluster job of its own (no bundle: the plan was made before)
                if run not in TRAIN_PLAN:
                    TRAIN_PLAN[run] = {
                        "minutes": estimate_minutes(
                            REGISTRY.runs[run], config["device"]
                        ),
                        "level": 0,
                        "group": None,
                    }
            paths += [best.best, best.trials]
            paths += [run_file(r, "metrics.json") for r in runs if r not in listed]
        if (
            pending
        ):  # every unfinished search enters the DAG now, not one after the other
            raise IncompleteCheckpointException(
                pending[0].rule, [err.targetfile for err in pending]
            )
        # once each: Snakemake compares the input lists it recorded
        return list(dict.fromkeys(paths))

    return inputs
