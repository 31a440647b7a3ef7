"""Searches on one Optuna study per search, D workers on it: KTG's graphs (Minami et al.) and TAKD's KD
hyper-parameters (Mirzadeh et al.). What a trial chooses, and how a study chooses, is its space:

* `GraphSpace` (KTG; the official code's search space, somaminami/DCL train.py): the model of every
  auxiliary node (node 1, the target, is fixed) and the gate of every edge s -> t, s in {0 = the labels,
  1..M}, t in 1..M, s != t, from {through, cutoff, correct, linear}. A node whose incoming edges are all
  cut off is a frozen pre-trained node; a graph that would freeze node 1 is rejected (the official code's
  BlacklistError) and recorded as pruned before training, so it counts as an explored graph.
  Sampler: random, and reproducible whatever the number of workers: trial k's draws depend only on
  (seed, k) (`TrialSeededSampler`). Pruner: `SuccessiveHalvingPruner(min_resource=1, reduction_factor=2,
  min_early_stopping_rate=0)`, i.e. ASHA with rungs at epochs 1, 2, 4, ...: a trial whose objective at a
  rung is not in the top half of the values recorded at that rung stops there. Objective: the accuracy
  after the last epoch.
* `HyperSpace` (TAKD; the official NNI search, search_space.json and config.yml): the KD temperature tau
  from a list and the KD weight lambda from a range on a grid. Sampler: TPE (NNI's tuner there), seeded;
  no pruning (the NNI config has no assessor). Objective: the best accuracy over the epochs (what the
  official train.py returns to NNI).

Shared by both:
* objective: the eval node's accuracy on a validation split held out of the training data
  ("validation"), or on the test split as KTG's official code does ("test"); reported every epoch;
* storage: an Optuna JournalStorage in one file (`journal.log`, JournalFileBackend with an open-lock,
  Optuna's file storage for several processes, NFS included), so local processes and cluster jobs
  share the study; no database server;
* budget: T trials in all. A worker takes a new trial only while finished + running trials < T (under a
  file lock), so D workers stop together at T; failed trials do not count;
* resume: each trial's training lives in trials/trialNNNN and saves its state every epoch. A worker
  that starts finds the trials its killed predecessor (same worker index) left RUNNING, marks them
  failed and enqueues the same parameters and seed again; the retry resumes the killed training from
  its last epoch (same run directory, same spec), replaying the epochs already reported. Finished
  trials are never lost: they are in the journal.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kdrepro.engine import TrainingError, train_run
from kdrepro.engine.train import discard_resume_state
from kdrepro.io import file_lock, save_json, save_text
from kdrepro.search_space import SearchDef, SearchError


# -- Optuna plumbing -------------------------------------------------------------------------------

def _optuna():
    import optuna  # only workers and exports load Optuna, not every registry that names a search (start-up time)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def trial_seeded_sampler(seed: int):
    optuna = _optuna()

    class TrialSeededSampler(optuna.samplers.RandomSampler):
        """RandomSampler whose draws for trial k depend only on (seed, k, parameter): the graphs explored
        are the same whatever the number of workers and the order in which they ask."""

        def sample_independent(self, study, trial, param_name, param_distribution):
            if not isinstance(param_distribution, optuna.distributions.CategoricalDistribution):
                return super().sample_independent(study, trial, param_name, param_distribution)
            return sampled_choice(seed, trial.number, param_name, param_distribution.choices)

    return TrialSeededSampler(seed=seed)


def sampled_choice(seed: int, number: int, name: str, choices):
    """The choice trial `number` draws for parameter `name`: uniform, from a generator seeded by all three."""
    digest = hashlib.sha256(f"{seed}/{number}/{name}".encode()).digest()
    return choices[np.random.RandomState(int.from_bytes(digest[:4], "little")).randint(len(choices))]


def asha_pruner():
    """ASHA: rungs at 1, 2, 4, ... epochs, the bottom half stopped (KTG's official code's settings)."""
    return _optuna().pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2, min_early_stopping_rate=0)


# the spaces name their sampler and pruner (kdrepro.search_space); the Optuna objects are made here
SAMPLERS = {"trial_seeded_random": trial_seeded_sampler, "tpe": lambda seed: _optuna().samplers.TPESampler(seed=seed)}
PRUNERS = {"asha": asha_pruner, "none": lambda: _optuna().pruners.NopPruner()}


def storage(search: SearchDef):
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock  # with Optuna (start-up time)

    search.directory.mkdir(parents=True, exist_ok=True)
    backend = JournalFileBackend(str(search.storage_path), lock_obj=JournalFileOpenLock(str(search.storage_path)))
    return optuna.storages.JournalStorage(backend)


def open_study(search: SearchDef):
    """The study in its journal, created by whichever worker comes first. A journal of another
    configuration is set aside (journal-<hash>.stale.log), never mixed in."""
    optuna = _optuna()
    with file_lock(search.directory / "open.lock"):
        if search.storage_path.exists():
            old = optuna.load_study(study_name=search.name, storage=storage(search)).user_attrs.get("config_hash")
            if old != search.config_hash:
                stale = search.directory / f"journal-{old}.stale.log"
                search.storage_path.rename(stale)
                print(f"[kdrepro] {search.storage_path} belongs to another configuration; kept as {stale.name}", file=sys.stderr)
        study = optuna.create_study(study_name=search.name, storage=storage(search), sampler=SAMPLERS[search.space.sampler](search.seed),
                                    pruner=PRUNERS[search.space.pruner](), direction="maximize", load_if_exists=True)
        if "config_hash" not in study.user_attrs:
            study.set_user_attr("config_hash", search.config_hash)
            study.set_user_attr("trials", search.trials)
            study.set_user_attr("objective", search.objective)
    return study


def counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name.lower()] = out.get(trial.state.name.lower(), 0) + 1
    return out


def finished(c: dict[str, int]) -> int:
    return c.get("complete", 0) + c.get("pruned", 0)


def owner(worker: int) -> str:
    return f"{socket.gethostname()}/worker{worker}"


def recover_stale(study, search: SearchDef, worker: int) -> list[int]:
    """Trials this worker index left RUNNING (it was killed): failed, and their choices enqueued again
    with the same seed, so that the retry resumes their training. Returns the numbers recovered."""
    optuna = _optuna()
    recovered = []
    with file_lock(search.directory / "ask.lock"):
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.user_attrs.get("owner") != owner(worker):
                continue
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            origin = trial.user_attrs.get("origin", trial.number)
            study.enqueue_trial(trial.params, user_attrs={"origin": origin, "retry_of": trial.number}, skip_if_exists=False)
            recovered.append(trial.number)
    return recovered


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(path.read_text()))]


def run_trial(study, trial, search: SearchDef, runs_root: Path, train_options: dict[str, Any]) -> str:
    """Train one sampled choice, under the space's pruner (`train_options`: train_run's device, precision,
    compile_mode); returns the state name told to the study."""
    optuna = _optuna()
    origin = int(trial.user_attrs.get("origin", trial.number))
    if "origin" not in trial.user_attrs:
        trial.set_user_attr("origin", origin)
    space = search.space
    choice = space.sample(trial)
    trial.set_user_attr(space.key, choice.to_dict())
    seed = search.trial_seed(origin)
    trial.set_user_attr("seed", seed)
    rejected = space.rejection(choice)
    if rejected:
        trial.set_user_attr("rejected", rejected)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned"
    spec = search.make_spec(choice, seed, f"{search.name}/trial{origin:04d}")
    run_dir = search.trial_dir(origin)
    key = search.objective_key

    def report(epoch: int, row: dict[str, Any]) -> None:
        trial.report(row[key], int(epoch))
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    try:
        for row in read_rows(run_dir / "epochs.csv"):  # epochs a killed attempt already trained
            report(int(row["epoch"]), row)
        train_run(spec, run_dir, runs_root, progress=False, on_epoch=report, **train_options)
    except optuna.TrialPruned:
        discard_resume_state(run_dir)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned"
    except TrainingError as err:  # a diverging choice (NaN loss) is a failed trial, not a failed search
        trial.set_user_attr("error", str(err))
        discard_resume_state(run_dir)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return "fail"
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # the retraining runs keep weights; trials keep their logs
    values = [row[key] for row in read_rows(run_dir / "epochs.csv")]
    study.tell(trial, max(values) if space.objective_epoch == "best" else values[-1])
    return "complete"


def run_worker(search: SearchDef, worker: int, runs_root: Path, log=sys.stderr, **train_options) -> dict[str, int]:
    """Work on the study until it has T finished trials (or the rest are running elsewhere)."""
    if not 0 <= worker < search.workers:
        raise SearchError(f"search {search.name}: worker must be in 0..{search.workers - 1}, got {worker}")
    search.done_flag(worker).unlink(missing_ok=True)
    study = open_study(search)
    recovered = recover_stale(study, search, worker)
    if recovered:
        print(f"[kdrepro] {search.name}: trials {recovered} of a killed worker {worker} failed; retrying their choices", file=log)
    mine: dict[str, int] = {}
    while True:
        with file_lock(search.directory / "ask.lock"):
            c = counts(study)
            if finished(c) + c.get("running", 0) >= search.trials:
                break
            trial = study.ask()
            trial.set_user_attr("owner", owner(worker))
            trial.set_user_attr("pid", os.getpid())
        state = run_trial(study, trial, search, runs_root, train_options)
        mine[state] = mine.get(state, 0) + 1
        print(f"[kdrepro] {search.name}: trial {trial.number} {state} ({finished(counts(study))}/{search.trials} finished)",
              file=log, flush=True)
    c = counts(study)
    summary = {"worker": worker, "mine": mine, "study": c}
    save_json(summary, search.done_flag(worker))
    return c


# -- results ---------------------------------------------------------------------------------------

def export(search: SearchDef) -> dict[str, Any]:
    """best.json (the best finished trial's choice) and trials.csv (every trial's objective per epoch)."""
    optuna = _optuna()
    if not search.storage_path.exists():
        raise SearchError(f"search {search.name}: no study at {search.storage_path} (run `kdrepro search` first)")
    study = optuna.load_study(study_name=search.name, storage=storage(search))
    if study.user_attrs.get("config_hash") != search.config_hash:
        raise SearchError(f"search {search.name}: {search.storage_path} holds another configuration; run the search again")
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise SearchError(f"search {search.name}: no trial finished ({counts(study)})")
    best = max(complete, key=lambda t: (t.value, -t.number))
    rows = []
    for t in trials:
        for epoch, value in sorted(t.intermediate_values.items()):
            rows.append({"trial": t.number, "state": t.state.name.lower(), "epoch": epoch, "objective": value})
        if not t.intermediate_values:
            rows.append({"trial": t.number, "state": t.state.name.lower(), "epoch": 0, "objective": math.nan})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["trial", "state", "epoch", "objective"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    save_text(buffer.getvalue(), search.trials_csv)
    result = {
        "study": search.name,
        "config_hash": search.config_hash,
        "space": search.space.identity(),
        "objective": search.objective,
        "objective_key": search.objective_key,
        "best_trial": best.number,
        "best_value": best.value,
        "best_seed": best.user_attrs.get("seed"),
        search.space.key: best.user_attrs[search.space.key],
        "trials": counts(study),
        "budget": {"T": search.trials, "D": search.workers},
    }
    save_json(result, search.best_path)
    return result
