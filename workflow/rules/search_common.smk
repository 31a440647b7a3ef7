# Functions of the search rules (workflow/rules/search.smk); see there.
from snakemake.exceptions import IncompleteCheckpointException

from kdrepro.cluster import estimate_minutes, runtime_limit
from kdrepro.search_space import Graph

SEARCHES = REGISTRY.searches


wildcard_constraints:
    study=r"[A-Za-z0-9_]+",
    worker=r"[0-9]+",


def search_path(study, name):
    return f"{RESULTS}/search/{study}/{name}"


def search_pretrained(wildcards):
    """The pre-trained runs a trial may freeze."""
    return [
        run_file(run, "checkpoint.pt") for run in SEARCHES[wildcards.study].pretrained
    ]


def search_workers(wildcards):
    return [
        search_path(wildcards.study, f"worker{i}.done")
        for i in range(SEARCHES[wildcards.study].study.workers)
    ]


def search_runtime(wildcards, attempt):
    """SLURM minutes of one worker: its share of the T trials, each at most a full trial."""
    search = SEARCHES[wildcards.study].study
    probe = search.make_spec(
        Graph.all_through([search.target_model] * search.node_count),
        0,
        f"{search.name}/probe",
    )
    share = -(-search.trials // search.workers)
    return runtime_limit(share * estimate_minutes(probe, config["device"]), attempt)


def deferred_metrics(target_name):
    """Input function of a target that reads searches' results (KTG's tables, figures and
    claims); [] for the other targets. The runs come from best.json as the finished checkpoint
    wrote it, which may differ from the file found at parse time: a search that ran again
    chose again."""
    studies = [
        name for name, search in SEARCHES.items() if target_name in search.readers
    ]
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
            paths += [best.best, best.trials]
            paths += [
                run_file(run, "metrics.json")
                for run in SEARCHES[study].result_runs().refs
                if run not in listed
            ]
        # every unfinished search enters the DAG now, not one after the other
        if pending:
            raise IncompleteCheckpointException(
                pending[0].rule, [err.targetfile for err in pending]
            )
        # once each: Snakemake compares the input lists it recorded
        return list(dict.fromkeys(paths))

    return inputs
