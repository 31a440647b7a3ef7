"""The graph search (kdrepro.search, on KTG's study): two worker processes share one study and the pruner
stops trials; a worker killed mid-trial resumes without losing finished trials; a journal of another
configuration is set aside. KTG's targets of the smoke run: test_ktg.py."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, needs_fashion_mnist

pytestmark = needs_fashion_mnist

# a search small enough for a test: resnet8 at quarter width on 300 Fashion-MNIST images
OVERRIDES = {
    "setting": "ktgsearch",
    "data": {"test_subset": 100},
    "ktg": {"node_counts": [2], "trials": 6, "workers": 2, "search_epochs": 2, "epochs": 1, "train_subset": 300,
            "validation": 100, "batch_size": 50, "pretrain_batch_size": 50, "search_seed": 0,
            "substitute": {"resnet32": "resnet8", "resnet110": "resnet8", "wrn28_2": "resnet8"},
            "model_options": {"resnet": {"width": 0.25}}},
}


def make_search(root: Path, overrides: dict | None = None):
    """The registry's search, its files under root/search and its pre-trained runs under root/runs."""
    from kdrepro import config as settings
    from kdrepro.config import merge
    from kdrepro.assemble import build_registry

    registry = build_registry(settings.load(["config/config.yaml", "config/smoke.yaml"], merge(OVERRIDES, overrides or {})))
    search = next(iter(registry.searches.values()))
    return registry, dataclasses.replace(search.study, directory=root / "search" / search.study.name), search.pretrained()


def worker_main(root: str, worker: int, overrides: str = "{}") -> None:
    """What a worker process runs (the tests start it with `python -c`)."""
    import torch

    from kdrepro.search import run_worker

    torch.set_num_threads(1)
    _, search, _ = make_search(Path(root), json.loads(overrides))
    run_worker(search, worker, Path(root) / "runs")


def start_worker(root: Path, worker: int, overrides: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from test_search import worker_main; "
            f"worker_main({str(root)!r}, {worker}, {json.dumps(json.dumps(overrides or {}))})")
    out = open(log or root / f"worker{worker}.log", "a")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The pre-trained node every trial may freeze (one run: all candidates become resnet8 here)."""
    from kdrepro.engine import train_run

    root = tmp_path_factory.mktemp("ktgsearch")
    registry, _, deps = make_search(root)
    for run in deps:
        train_run(registry.runs[run], root / "runs" / run, root / "runs", progress=False)
    return root


def fresh_root(pretrained: Path, tmp_path: Path) -> Path:
    (tmp_path / "runs").symlink_to(pretrained / "runs", target_is_directory=True)
    return tmp_path


def load(search):
    import optuna

    from kdrepro.search import storage

    return optuna.load_study(study_name=search.name, storage=storage(search))


def test_two_worker_processes_share_one_study_and_the_pruner_stops_trials(pretrained, tmp_path):
    import optuna

    root = fresh_root(pretrained, tmp_path)
    workers = [start_worker(root, 0), start_worker(root, 1)]
    for w in workers:
        assert w.wait(timeout=300) == 0, (root / "worker0.log").read_text()[-2000:] + (root / "worker1.log").read_text()[-2000:]
    _, search, _ = make_search(root)
    trials = load(search).get_trials()
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == len(trials) == search.trials == 6  # exactly T graphs between the two workers
    assert {t.user_attrs["owner"].rsplit("/", 1)[1] for t in trials} == {"worker0", "worker1"}  # both took trials
    # ASHA: some graphs were stopped at a rung before their last epoch, some trained to the end
    stopped = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values
               and max(t.intermediate_values) < search_epochs(search)]
    assert stopped, [(t.number, t.state, t.intermediate_values) for t in trials]
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # each worker wrote its flag; the export names the best finished graph
    assert all(search.done_flag(i).exists() for i in (0, 1))
    from kdrepro.search import export

    best = export(search)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert best["best_value"] == max(t.value for t in complete)
    frame = pd.read_csv(search.trials_csv)
    assert set(frame.trial) == {t.number for t in trials} and set(frame.state) <= {"complete", "pruned"}
    # a further worker finds the budget spent and starts nothing
    from kdrepro.search import run_worker

    assert run_worker(search, 0, root / "runs") == {"complete": len(complete), "pruned": 6 - len(complete)}


def search_epochs(search) -> int:
    return search.probe_spec().epochs


@pytest.mark.slow  # a worker process killed mid-trial and a second one resuming it: about 45 s, in `make test-slow` and CI
def test_a_killed_worker_resumes_without_losing_finished_trials(pretrained, tmp_path):
    import optuna

    from kdrepro.search import sampled_choice
    from kdrepro.search_space import GATES

    overrides = {"ktg": {"search_epochs": 3, "trials": 3}}
    root = fresh_root(pretrained, tmp_path)
    _, search, _ = make_search(root, overrides)
    # the graphs are a function of (seed, trial number): find the first trial that trains (not a rejected one)
    first = next(k for k in range(10) if any(sampled_choice(search.seed, k, f"gate_{s}->1", GATES) != "cutoff" for s in (0, 2)))
    proc = start_worker(root, 0, overrides)
    resume = search.trial_dir(first) / "resume.pt"
    deadline = time.time() + 240
    while not resume.exists():  # the first training trial has saved an epoch: it is never pruned (first at its rung)
        assert proc.poll() is None and time.time() < deadline, (root / "worker0.log").read_text()[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.state, t.value) for t in load(search).get_trials() if t.state.is_finished()}
    killed = [t for t in load(search).get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    assert [t.number for t in killed] == [first]
    # the same worker index starts again: the killed trial is failed and its graph retried from its last epoch
    again = start_worker(root, 0, overrides, log=root / "worker0-again.log")
    assert again.wait(timeout=300) == 0, (root / "worker0-again.log").read_text()[-3000:]
    log = (root / "worker0-again.log").read_text()
    assert f"trials [{first}] of a killed worker 0 failed" in log and "resuming" in log
    trials = load(search).get_trials()
    for number, (state, value) in before.items():  # nothing finished was lost
        assert (trials[number].state, trials[number].value) == (state, value)
    assert trials[first].state == optuna.trial.TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == first]
    assert len(retry) == 1 and retry[0].params == killed[0].params and retry[0].user_attrs["origin"] == first
    assert retry[0].state.is_finished() and 1 in retry[0].intermediate_values  # the replayed epoch was reported
    assert sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials) == 3


def test_a_journal_of_another_configuration_is_set_aside(pretrained, tmp_path):
    from kdrepro.search import open_study

    root = fresh_root(pretrained, tmp_path)
    _, search, _ = make_search(root)
    open_study(search).set_user_attr("marker", 1)
    _, other, _ = make_search(root, {"ktg": {"trials": 7}})
    assert other.config_hash != search.config_hash
    study = open_study(other)
    assert "marker" not in study.user_attrs and study.user_attrs["trials"] == 7
    assert list(other.directory.glob("journal-*.stale.log"))
