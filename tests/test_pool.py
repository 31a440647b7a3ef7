"""The warm trainer (kdrepro.pool, kdrepro.pool_server): a run handed to it gives the bits and files a fresh
process gives, its failures and cancellations reach the job, and the server goes when idle."""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, needs_fashion_mnist

RUN = "takd/fashion_mnist/plane2/s0"
TINY = ["--configfile", str(REPO / "config/config.yaml"), "--config", "data.train_subset=300", "--config", "data.test_subset=200",
        "--config", "takd.epochs=2", "--no-progress"]


@pytest.fixture
def servers():
    """A server directory of the test's own, short enough for a socket path (pytest's tmp_path is not)."""
    directory = Path(tempfile.mkdtemp(prefix="kdrepro-test-", dir="/tmp"))
    yield directory
    for sock in directory.glob("*/*.sock"):  # the server exits when idle; wait, so none outlives its test
        for _ in range(100):
            if not sock.exists():
                break
            time.sleep(0.1)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server_env(servers):
    """...and a server that exits two seconds after its last run."""
    return dict(os.environ, KDREPRO_SERVER_DIR=str(servers), KDREPRO_SERVER_IDLE_SECONDS="2",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def train(cwd: Path, env: dict, *args: str, **popen) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    return subprocess.run(["kdrepro", "train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **popen)


def without_seconds(epochs_csv: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in epochs_csv.read_text().splitlines()]


@needs_fashion_mnist
def test_a_run_handed_to_the_warm_trainer_gives_the_bits_of_a_fresh_process_and_the_server_exits_when_idle(tmp_path, servers, server_env):
    served = train(tmp_path / "served", server_env, RUN, *TINY, "--server")
    sockets = list(servers.glob("*/*.sock"))
    assert len(sockets) == 1
    fresh = train(tmp_path / "fresh", server_env, RUN, *TINY)
    assert served.returncode == 0 and fresh.returncode == 0, served.stderr + fresh.stderr
    assert "training in this process" not in served.stderr  # it was the server's child that trained
    logs = list(servers.glob("*/trainer-*.log"))
    assert len(logs) == 1 and "serving" in logs[0].read_text()
    assert '"best_test_acc"' in served.stdout  # the child's output is the job's output
    run_files = [tmp_path / side / "results/default/runs" / RUN for side in ("served", "fresh")]
    assert without_seconds(run_files[0] / "epochs.csv") == without_seconds(run_files[1] / "epochs.csv")
    assert all((files / "checkpoint.pt").exists() and (files / "metrics.json").exists() for files in run_files)

    deadline = time.monotonic() + 30
    while sockets[0].exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sockets[0].exists(), "the idle server did not exit"


@needs_fashion_mnist
def test_a_runs_failure_is_the_jobs_exit_status_and_message(tmp_path, server_env):
    # with the job's stdin closed, as a batch system may start it
    failed = train(tmp_path / "job", server_env, "--spec-json", "{not json", "--server", preexec_fn=lambda: os.close(0))
    assert failed.returncode == 1
    assert "--spec-json is not valid JSON" in failed.stderr
    assert "training in this process" not in failed.stderr


@needs_fashion_mnist
def test_a_cancelled_job_stops_its_run_and_leaves_it_resumable(tmp_path, server_env):
    cwd = tmp_path / "job"
    cwd.mkdir()
    log = tmp_path / "job.log"
    long_run = [*TINY, "--config", "takd.epochs=500"]
    with open(log, "w") as out:
        job = subprocess.Popen(["kdrepro", "train", RUN, *long_run, "--server"], cwd=cwd, env=server_env,
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "epoch 2/500" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "epoch 2/500" in log.read_text(), log.read_text()
    finally:
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=30)
    lock = cwd / "results/default/runs" / RUN / ".lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the child holds the run's lock while it trains
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.2)
    else:
        pytest.fail("the run went on training after its job was cancelled")
    assert (cwd / "results/default/runs" / RUN / "resume.pt").exists()


def test_inside_a_slurm_step_the_run_trains_in_its_own_process(tmp_path, servers, server_env):
    # a SLURM step ends its processes with it: a server started there would serve one run
    failed = train(tmp_path / "job", dict(server_env, SLURM_STEP_ID="0"), "--spec-json", "{not json", "--server")
    assert "inside a SLURM job step" in failed.stderr and "--spec-json is not valid JSON" in failed.stderr
    assert not list(servers.glob("*/*.sock")) and not list(servers.glob("*/*.log"))
