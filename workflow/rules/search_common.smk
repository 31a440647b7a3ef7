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


def finished_searches(studies):
    """The outputs of the search_best checkpoints of `studies`, in order. Every unfinished one
    enters the DAG now, not one after the other."""
    outputs, pending = [], []
    for study in studies:
        try:
            outputs.append(checkpoints.search_best.get(study=study).output)
        except IncompleteCheckpointException as err:
            pending.append(err)
    if pending:
        raise IncompleteCheckpointException(
            pending[0].rule, [err.targetfile for err in pending]
        )
    return outputs


def search_pretrained(wildcards):
    """The pre-trained runs a trial may freeze; a TAKD search's teacher is the run that an
    earlier search (its TA's) chose, known once that search has finished."""
    search = SEARCHES[wildcards.study]
    finished_searches(search.after)
    return [run_file(run, "checkpoint.pt") for run in search.pretrained()]


def search_workers(wildcards):
    return [
        search_path(wildcards.study, f"worker{i}.done")
        for i in range(SEARCHES[wildcards.study].study.workers)
    ]


def search_runtime(wildcards, attempt):
    """SLURM minutes of one worker: its share of the T trials, each at most a full trial. A search
    that trains from another's result (Search.after) has no trial spec before that search has
    finished; its job is re-created then (Snakemake updates the jobs that depend on a
    checkpoint), and until then the limit is a placeholder of no trial time. (A resource function
    cannot wait on a checkpoint: Snakemake 9 fails on it.)"""
    search = SEARCHES[wildcards.study]
    if not all(SEARCHES[study].study.best_path.exists() for study in search.after):
        return runtime_limit(0, attempt)
    share = -(-search.study.trials // search.study.workers)
    return runtime_limit(
        share * estimate_minutes(search.study.probe_spec(), config["device"]), attempt
    )


def deferred_metrics(target_name):
    """Input function of a target that reads searches' results (KTG's and a searching TAKD's
    tables and figures, and the setting-wide claims and runs' index); [] for the other targets.
    The runs come from best.json as the finished checkpoint wrote it, which may differ from the
    file found at parse time: a search that ran again chose again."""
    setting_wide = REGISTRY.targets[target_name].paper == "all"
    studies = [
        name
        for name, search in SEARCHES.items()
        if setting_wide or target_name in search.readers
    ]
    if not studies:
        return []
    # each file once in the rule's inputs, whichever way it came: Snakemake compares the recorded
    # input list, duplicates included, with the next one's
    listed = set(static_runs(REGISTRY.targets[target_name]))

    def inputs(wildcards):
        paths = []
        for study, best in zip(studies, finished_searches(studies)):
            paths += [best.best, best.trials]
            paths += [
                run_file(run, "metrics.json")
                for run in SEARCHES[study].result_runs().refs
                if run not in listed
            ]
        # once each: Snakemake compares the input lists it recorded
        return list(dict.fromkeys(paths))

    return inputs
