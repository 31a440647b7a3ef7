"""The training engine on a small real run: determinism, exact resume, checkpoints, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import needs_fashion_mnist
from kdrepro.engine import CheckpointError, TrainingError, train_run
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule

pytestmark = needs_fashion_mnist

DATA = Data("fashion_mnist", train_subset=384, test_subset=128, pad_to=32, normalization="half")


def scratch(name="t/plane4", arch="plane4", epochs=2, **kw):
    return RunSpec(name=name, data=DATA, nodes=(Node("student", arch),), edges=(Edge(LABELS, "student", "ce"),),
                   epochs=epochs, seed=0, batch_size=64, optimizer=Optimizer(lr=0.05), **kw)


def distilled(teacher_run, epochs=3, **kw):
    return RunSpec(
        name="t/plane4-plane2", data=DATA,
        nodes=(Node("teacher", "plane4", frozen_from=teacher_run), Node("student", "plane2")),
        edges=(Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5, options={"temperature": 4.0})),
        epochs=epochs, seed=0, batch_size=64, optimizer=Optimizer(lr=0.05),
        schedule=Schedule("multistep", (2,), gamma=0.1), **kw,
    )


def rows_without_time(path):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cut = header.index("seconds")
    return [line.split(",")[:cut] for line in lines]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train_run(scratch(), root / "t/plane4", root, progress=False)
    return root


def test_outputs_and_metrics(teacher):
    metrics = json.loads((teacher / "t/plane4/metrics.json").read_text())
    assert {"final_test_acc", "best_test_acc", "params", "wall_seconds", "config_hash", "package_version", "seed"} <= set(metrics)
    assert metrics["params"]["student"] == 37_050  # plane4, CIFAR-10 book, 1 input channel
    assert 10 < metrics["best_test_acc"] <= 100
    assert not (teacher / "t/plane4/resume.pt").exists()
    assert len(rows_without_time(teacher / "t/plane4/epochs.csv")) == 3  # header + 2 epochs


def test_bf16_and_compile_change_how_a_run_computes_not_what_it_is(teacher, tmp_path, monkeypatch):
    """bf16 autocast (on the CPU too) and torch.compile of every network: recorded in metrics.json,
    outside the config hash (the run is the same experiment, computed another way)."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **options: compiled.append(options))
    spec = distilled("t/plane4", epochs=1)
    fast = train_run(spec, tmp_path / "fast", teacher, progress=False, precision="bf16", compile_mode="reduce-overhead")
    faithful = train_run(spec, tmp_path / "faithful", teacher, progress=False)
    assert compiled == [{"mode": "reduce-overhead"}] * 2  # teacher and student, in the fast run only
    assert (fast["precision"], fast["compile"], faithful["precision"], faithful["compile"]) == ("bf16", "reduce-overhead", "fp32", None)
    assert fast["config_hash"] == faithful["config_hash"]
    loss = [float(rows_without_time(tmp_path / run / "epochs.csv")[1][2]) for run in ("fast", "faithful")]
    assert loss[0] != loss[1] and loss[0] == pytest.approx(loss[1], rel=0.05)  # bf16 rounds, a little


def test_same_seed_same_metrics(teacher, tmp_path):
    train_run(scratch(), tmp_path / "t/plane4", tmp_path, progress=False)
    assert rows_without_time(tmp_path / "t/plane4/epochs.csv") == rows_without_time(teacher / "t/plane4/epochs.csv")
    a = torch.load(tmp_path / "t/plane4/checkpoint.pt")["model"]["state_dict"]
    b = torch.load(teacher / "t/plane4/checkpoint.pt")["model"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kill_and_resume_gives_identical_metrics(teacher, tmp_path):
    """SIGKILL a training process after its first epoch; the rerun resumes and ends bit-identical
    (the child uses this process's thread count: another count sums in another order)."""
    spec = distilled("t/plane4", epochs=4)
    reference = tmp_path / "reference"
    train_run(spec, reference / spec.name, teacher, progress=False)

    run_dir = tmp_path / "killed" / spec.name
    (tmp_path / "killed/t/plane4").mkdir(parents=True)
    (tmp_path / "killed/t/plane4/checkpoint.pt").symlink_to(teacher / "t/plane4/checkpoint.pt")
    code = (
        "import sys; from pathlib import Path; from kdrepro.graph import RunSpec; from kdrepro.engine import train_run; "
        f"import json, torch; torch.set_num_threads({torch.get_num_threads()}); spec = RunSpec.from_dict(json.loads(sys.argv[1])); "
        "train_run(spec, Path(sys.argv[2]), Path(sys.argv[3]), progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, spec.to_json(), str(run_dir), str(tmp_path / "killed")],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run_dir / "resume.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended or stalled before its first epoch"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    epochs_done = torch.load(run_dir / "resume.pt", weights_only=False)["state"]["epoch"]
    assert 1 <= epochs_done < 4

    train_run(spec, run_dir, tmp_path / "killed", progress=False)
    assert rows_without_time(run_dir / "epochs.csv") == rows_without_time(reference / spec.name / "epochs.csv")
    a = torch.load(run_dir / "checkpoint.pt")["model"]["state_dict"]
    b = torch.load(reference / spec.name / "checkpoint.pt")["model"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_teacher_is_not_changed(teacher, tmp_path):
    before = (teacher / "t/plane4/checkpoint.pt").read_bytes()
    metrics = train_run(distilled("t/plane4", epochs=1), tmp_path / "s", teacher, progress=False)
    assert (teacher / "t/plane4/checkpoint.pt").read_bytes() == before
    teacher_metrics = json.loads((teacher / "t/plane4/metrics.json").read_text())
    assert metrics["node_test_acc"]["teacher"] == pytest.approx(teacher_metrics["final_test_acc"])


def test_corrupt_and_mismatched_checkpoints_fail_before_training(teacher, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        train_run(distilled("bad"), tmp_path / "s", tmp_path, progress=False)
    wrong_arch = RunSpec.from_dict({**distilled("t/plane4").to_dict(), "nodes": [
        {"name": "teacher", "arch": "plane6", "frozen_from": "t/plane4"}, {"name": "student", "arch": "plane2"}]})
    with pytest.raises(CheckpointError, match="plane4"):
        train_run(wrong_arch, tmp_path / "s2", teacher, progress=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        train_run(distilled("missing"), tmp_path / "s3", tmp_path, progress=False)
    assert not (tmp_path / "s/metrics.json").exists()


def test_snapshots_at_save_epochs(tmp_path):
    metrics = train_run(scratch(epochs=2, save_epochs=(1,)), tmp_path / "r", tmp_path, progress=False)
    snapshot = torch.load(tmp_path / "r/epoch001.pt")
    assert snapshot["epoch"] == 1 and set(metrics["snapshot_test_acc"]) == {"1"}


def test_the_test_split_is_evaluated_every_test_every_epochs_the_last_and_the_snapshots(teacher, tmp_path):
    every = train_run(scratch(epochs=5), tmp_path / "every", tmp_path, progress=False)
    sparse = train_run(scratch(epochs=5, test_every=2, save_epochs=(1,)), tmp_path / "sparse", tmp_path, progress=False)
    full = {int(r[0]): r[-1] for r in rows_without_time(tmp_path / "every/epochs.csv")[1:]}
    some = {int(r[0]): r[-1] for r in rows_without_time(tmp_path / "sparse/epochs.csv")[1:]}
    assert [e for e, acc in some.items() if acc == "nan"] == [3]  # 1 (a snapshot), 2, 4 and 5 (the last) are tested
    assert all(some[e] == full[e] for e in (1, 2, 4, 5))  # evaluating changes nothing that training does
    assert sparse["final_test_acc"] == every["final_test_acc"]
    assert sparse["best_test_acc"] == max(float(full[e]) for e in (1, 2, 4, 5))
    assert sparse["config_hash"] != every["config_hash"]


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    exploding = RunSpec.from_dict({**scratch().to_dict(), "optimizer": {"lr": 1e30}})
    with pytest.raises(TrainingError, match="not finite"):
        train_run(exploding, tmp_path / "r", tmp_path, progress=False)


def test_a_finished_run_is_kept_and_never_overwritten_by_another_configuration(teacher):
    before = (teacher / "t/plane4/checkpoint.pt").read_bytes()
    again = train_run(scratch(), teacher / "t/plane4", teacher, progress=False)
    assert again == json.loads((teacher / "t/plane4/metrics.json").read_text())
    with pytest.raises(TrainingError, match="another configuration"):
        train_run(scratch(epochs=3), teacher / "t/plane4", teacher, progress=False)
    assert (teacher / "t/plane4/checkpoint.pt").read_bytes() == before
