"""Fault injection (issue 17): damaged checkpoints, resume states and dataset files, runs of one name at
once, bad inputs, divergence, write failures and a killed Snakemake. Each test fabricates its fault on
a tiny run (a few hundred images, one or two epochs)."""

import dataclasses
import errno
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import FASHION_MNIST, REPO, copy_workflow, needs_fashion_mnist
from kdrepro import cli
from kdrepro import config as settings
from kdrepro.data import DatasetError, dataset_meta
from kdrepro.data.sources import load_dataset
from kdrepro.engine import TrainingError, WriteError, train_run
from kdrepro.engine.checkpoint import DamagedCheckpoint, load_checkpoint
from kdrepro.engine.records import training_problem
from kdrepro.engine.train import LOCK, PREVIOUS_RESUME, RESUME
from kdrepro.assemble import build_registry
from kdrepro.graph import Optimizer, RunSpec, SpecError
from kdrepro.io import file_lock, save_text
from test_engine import DATA, distilled, rows_without_time, scratch

TEACHER = "t/plane4"  # the teacher that test_engine's distilled() runs load
TINY = dataclasses.replace(DATA, train_subset=128, test_subset=128)


def tiny(name="t/reference", epochs=3, arch="plane2", **kw) -> RunSpec:
    return dataclasses.replace(scratch(name, arch, epochs), data=TINY, **kw)


class Stop(Exception):
    """Raised by on_epoch to end a training after an epoch, its resume state saved (as a kill would)."""


def stop_after(epoch):
    def on_epoch(done, row):
        if done == epoch:
            raise Stop

    return on_epoch


def damage_a_tensor(path: Path, pattern: bytes = b"\x01") -> None:
    """XOR `pattern` into the middle of the student's largest tensor inside a checkpoint or resume file
    (torch's zip stores tensor bytes as they are)."""
    saved = torch.load(path, weights_only=False)
    weights = saved["nodes"]["student"]["state_dict"] if "nodes" in saved else saved["models"]["student"]
    tensor = max(weights.values(), key=torch.numel)
    raw = bytearray(path.read_bytes())
    at = raw.find(tensor.numpy().tobytes()) + tensor.numel() * tensor.element_size() // 2
    for i, byte in enumerate(pattern):
        raw[at + i] ^= byte
    path.write_bytes(bytes(raw))


def finish_elsewhere(run_dir: Path, finished: Path) -> None:
    """What another process leaves: the files of a finished run (not its lock file)."""
    shutil.copytree(finished, run_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(LOCK))


def same_outputs(run_dir: Path, reference: Path) -> bool:
    a = torch.load(run_dir / "checkpoint.pt")["model"]["state_dict"]
    b = torch.load(reference / "checkpoint.pt")["model"]["state_dict"]
    return (rows_without_time(run_dir / "epochs.csv") == rows_without_time(reference / "epochs.csv")
            and all(torch.equal(a[k], b[k]) for k in a))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished teacher, and an uninterrupted 3-epoch run of it to compare resumed runs with."""
    root = tmp_path_factory.mktemp("runs")
    if FASHION_MNIST.is_dir():
        train_run(tiny(TEACHER, epochs=1, arch="plane4"), root / TEACHER, root, progress=False)
        train_run(tiny(), root / "reference", root, progress=False)
    return root


# -- 1. corruption is never used -------------------------------------------------------------------
@needs_fashion_mnist
@pytest.mark.parametrize("pattern", [b"\x01", bytes(range(1, 65))], ids=["one bit", "64 bytes"])
def test_a_damaged_teacher_stops_its_student_naming_the_run_to_retrain(runs, tmp_path, pattern):
    teacher = tmp_path / TEACHER
    shutil.copytree(runs / TEACHER, teacher)
    damage_a_tensor(teacher / "checkpoint.pt", pattern)
    with pytest.raises(DamagedCheckpoint, match=rf"checkpoint {teacher}/checkpoint.pt fails its content checksum.*"
                                                rf"retrain run {TEACHER}: `snakemake {teacher}/metrics.json --force`"):
        train_run(distilled(TEACHER, epochs=1), tmp_path / "student", tmp_path, progress=False)
    assert not (tmp_path / "student/metrics.json").exists()


@needs_fashion_mnist
def test_the_train_command_says_it_in_one_line(runs, tmp_path):
    """Through `kdrepro train --spec-json` (what a Snakemake job runs): exit 1, one line, no traceback."""
    teacher = tmp_path / "results/t/runs" / TEACHER
    shutil.copytree(runs / TEACHER, teacher)
    damage_a_tensor(teacher / "checkpoint.pt")
    proc = subprocess.run([sys.executable, "-m", "kdrepro.cli", "train", "--spec-json", distilled(TEACHER, epochs=1).to_json(),
                           "--setting", "t", "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"kdrepro: checkpoint results/t/runs/{TEACHER}/checkpoint.pt fails its content checksum")


@needs_fashion_mnist
def test_a_damaged_resume_state_is_set_aside_and_the_run_continues_from_the_one_before(runs, tmp_path):
    run_dir = tmp_path / "r"
    with pytest.raises(Stop):
        train_run(tiny(), run_dir, runs, progress=False, on_epoch=stop_after(2))
    assert torch.load(run_dir / PREVIOUS_RESUME, weights_only=False)["state"]["epoch"] == 1
    damage_a_tensor(run_dir / RESUME)
    assert cli.resume_progress(run_dir, 3).startswith("partial   1/3 epochs")
    train_run(tiny(), run_dir, runs, progress=False)
    assert same_outputs(run_dir, runs / "reference")
    assert len(list(run_dir.glob(f"{RESUME}.damaged-*"))) == 1 and not (run_dir / PREVIOUS_RESUME).exists()


# -- 1b. a truncated resume state does not block the run; stale temporaries go -----------------------
@needs_fashion_mnist
def test_a_truncated_resume_state_restarts_the_run_and_status_says_so(runs, tmp_path, capsys):
    run_dir = tmp_path / "r"
    with pytest.raises(Stop):
        train_run(tiny(), run_dir, runs, progress=False, on_epoch=stop_after(1))
    resume = run_dir / RESUME
    resume.write_bytes(resume.read_bytes()[: resume.stat().st_size // 2])
    assert "damaged" in cli.resume_progress(run_dir, 3)  # `kdrepro status` used to crash here
    (run_dir / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
    (run_dir / ".resume.pt.k1ll3d.tmp").write_bytes(b"half a file")
    train_run(tiny(), run_dir, runs, progress=False)
    log = capsys.readouterr().err
    assert "corrupt" in log and "starting t/reference from scratch" in log and "removed 2 temporary file(s)" in log
    assert same_outputs(run_dir, runs / "reference") and not list(run_dir.glob(".*.tmp"))


# -- 1c. runs of one name at once never replace each other ------------------------------------------
@needs_fashion_mnist
def test_a_run_waits_for_another_process_training_it_and_keeps_its_finished_run(runs, tmp_path):
    run_dir = tmp_path / TEACHER
    errors = []
    with file_lock(run_dir / LOCK):  # another process holds the run while it trains another configuration
        other = threading.Thread(target=lambda: errors.append(pytest.raises(TrainingError, train_run, tiny(TEACHER, epochs=2, arch="plane4"),
                                                                              run_dir, tmp_path, progress=False)))
        other.start()
        time.sleep(1)
        assert other.is_alive() and not (run_dir / "resume.pt").exists()  # waiting, not training
        finish_elsewhere(run_dir, runs / TEACHER)
    other.join(60)
    assert "another configuration" in str(errors[0].value)
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1


@needs_fashion_mnist
def test_the_final_write_checks_again_for_a_finished_run_of_another_configuration(runs, tmp_path):
    run_dir = tmp_path / TEACHER

    def finished_meanwhile(epoch, row):  # by a writer that ignores the lock (another version of kdrepro)
        finish_elsewhere(run_dir, runs / TEACHER)

    with pytest.raises(TrainingError, match="another configuration"):
        train_run(tiny(TEACHER, epochs=2, arch="plane4"), run_dir, tmp_path, progress=False, on_epoch=finished_meanwhile)
    assert (run_dir / "checkpoint.pt").read_bytes() == (runs / TEACHER / "checkpoint.pt").read_bytes()


@needs_fashion_mnist
def test_verify_lists_damaged_files_and_sets_their_runs_aside(runs, tmp_path, monkeypatch, capsys):
    copy_workflow(tmp_path)
    monkeypatch.chdir(tmp_path)
    results = Path("results/smoke/runs")
    shutil.copytree(runs / TEACHER, results / TEACHER)
    shutil.copytree(runs / "reference", results / "t/reference")
    damage_a_tensor(results / TEACHER / "checkpoint.pt")
    with pytest.raises(SystemExit) as stop:
        cli.main(["verify", "smoke", "--configfile", "config/smoke.yaml"])
    out = capsys.readouterr().out
    assert stop.value.code == 1 and out.count("DAMAGED") == 1 and f"{TEACHER}/checkpoint.pt fails its content checksum" in out
    assert "1 dataset(s) checked: 1 damaged" in out
    assert f"snakemake {results / TEACHER}/metrics.json --force --configfile config/smoke.yaml" in out
    with pytest.raises(SystemExit):
        cli.main(["verify", "smoke", "--configfile", "config/smoke.yaml", "--set-aside"])
    assert not (results / TEACHER / "checkpoint.pt").exists() and not (results / TEACHER / "metrics.json").exists()
    assert len(list((results / TEACHER).glob("*.damaged-*"))) == 2 and (results / "t/reference/metrics.json").exists()
    cli.main(["verify", "smoke", "--configfile", "config/smoke.yaml"])  # nothing damaged is left


# -- 2. damaged dataset files give the checksum message -----------------------------------------------
@needs_fashion_mnist
@pytest.mark.parametrize("damage", ["flip a byte (gzip CRC fails)", "truncate"])
def test_a_damaged_dataset_file_gives_the_checksum_message(tmp_path, damage):
    for path in FASHION_MNIST.glob("*.gz"):
        shutil.copy(path, tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(labels.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    labels.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=f"checksum mismatch for {labels}"):
        load_dataset("fashion_mnist", tmp_path)
    with pytest.raises(DatasetError, match=f"{labels} is damaged"):
        load_dataset("fashion_mnist", tmp_path, verify=False)


@needs_fashion_mnist
def test_the_dataset_registry_matches_the_loader():
    train, test, info = load_dataset("fashion_mnist")
    meta = dataset_meta("fashion_mnist")
    assert (meta.num_classes, meta.channels, meta.size) == (info.num_classes, info.channels, info.size)
    assert (meta.train, meta.test) == (len(train.labels), len(test.labels)) == (60_000, 10_000)


# -- 3. every bad input is refused before any job, its key named ---------------------------------------
# (the input, as a setting override, and what the message must say). Their messages are in issue 17.
BAD_SETTINGS = [
    ("model options of an unknown family", {"takd": {"model_options": {"planee": {"width": 0.5}}}},
     "config key takd.model_options.planee: no model family 'planee'"),
    ("a negative width", {"takd": {"model_options": {"plane": {"width": -0.5}}}},
     "config key takd.model_options.plane.width: .*must be a positive number"),
    ("a non-numeric width", {"tfkd": {"model_options": {"mobilenet": {"width": "wide"}}}},
     "config key tfkd.model_options.mobilenet.width: .*must be a number, got 'wide'"),
    ("a CUR count that does not divide the batch", {"cckd": {"cur": {"k": [3]}}},
     "config key cckd.cur.k.0: 3 does not divide the batch of 128"),
    ("more SUR superclasses than classes", {"cckd": {"sur": {"superclasses": 12}}},
     "config key cckd.sur.superclasses: 12 superclasses, but the setting's datasets have at most 10 classes"),
    ("a training subset larger than the dataset", {"data": {"train_subset": 70_000}},
     "config key data.train_subset: 70000 images asked for, but fashion_mnist has 60000 training images"),
    ("a test subset larger than the dataset", {"data": {"test_subset": 20_000}},
     "config key data.test_subset: 20000 images asked for, but fashion_mnist has 10000 test images"),
    ("a validation split larger than the training subset", {"data": {"validation": 600}},
     r"config key data.validation: 600 validation images leave none of the 512 training images \(train_subset 512\) to train on"),
    ("pad_to smaller than the image", {"data": {"pad_to": 16}},
     "config key data.pad_to: 16 is smaller than the 28x28 images of fashion_mnist"),
]


@pytest.mark.parametrize("what,override,message", BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_bad_settings_are_refused_with_the_key(what, override, message):
    with pytest.raises(settings.ConfigError, match=message):
        settings.load(["config/smoke.yaml"], override)


def experiment_with(tmp_path, old, new):
    shutil.copytree("config/experiments", tmp_path / "experiments")
    path = tmp_path / "experiments/takd.yaml"
    path.write_text(path.read_text().replace(old, new, 1))
    return tmp_path / "experiments"


PLANE_RECIPE = "optimizer: {lr: 0.1, momentum: 0.9, weight_decay: 0.0}"


@pytest.mark.parametrize("new,message", [
    (PLANE_RECIPE.replace("0.1", '"0.1"'), r"takd.yaml key protocols.paper.families.plane.optimizer.lr: '0.1' is not of type 'number'"),
    (PLANE_RECIPE.replace("momentum", "momentun"),
     r"takd.yaml key protocols.paper.families.plane.optimizer: Additional properties are not allowed \('momentun'"),
], ids=["a learning rate written as a string", "a misspelt optimizer key"])
def test_bad_experiment_files_are_refused_with_file_and_key(tmp_path, new, message):
    experiments = experiment_with(tmp_path, PLANE_RECIPE, new)
    with pytest.raises(settings.ConfigError, match=message):
        build_registry(settings.load(["config/smoke.yaml"]), experiments_dir=experiments)


@pytest.mark.parametrize("change,message", [
    (lambda spec: spec["optimizer"].update(lr="0.1"), "run spec t/plane4: key optimizer.lr must be a number, got '0.1'"),
    (lambda spec: spec["optimizer"].update(momentun=0.9), "run spec t/plane4: unknown key optimizer.momentun"),
    (lambda spec: spec["data"].update(train_subset=70_000), "run t/plane4: data.train_subset: 70000 images asked for"),
], ids=["a learning rate written as a string", "a misspelt optimizer key", "a subset larger than the dataset"])
def test_bad_run_specs_are_refused_with_the_key(change, message):
    raw = json.loads(scratch().to_json())
    change(raw)
    with pytest.raises(SpecError, match=message):
        RunSpec.from_dict(raw)


@pytest.mark.parametrize("flags,message", [
    (["--threads", "0"], "argument --threads: 0 is less than the minimum of 1, as the setting key threads_per_job requires"),
    (["--device", "gpu0"], "argument --device: 'gpu0' does not match"),
])
def test_bad_flags_are_refused_by_the_command_line(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "takd/fashion_mnist/plane2/s0", *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("content,message", [
    ("setting: x\ndatasets: [fashion_mnist\nseeds: [0]\n", r"bad.yaml, line 3, column 6: not valid YAML"),
    ("- setting: x\n", r"bad.yaml: its top level must be a mapping of setting keys .*not a list"),
], ids=["a YAML syntax error", "a list at top level"])
def test_bad_config_files_name_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(SystemExit, match=message):
        cli.main(["train", "takd/fashion_mnist/plane2/s0", "--configfile", str(tmp_path / "bad.yaml")])


def test_spec_json_takes_the_spec_or_a_file_holding_it(tmp_path):
    spec = tiny(epochs=1)
    (tmp_path / "spec.json").write_text(spec.to_json())
    assert cli.spec_from_flag(str(tmp_path / "spec.json")) == cli.spec_from_flag(spec.to_json()) == spec


@pytest.mark.parametrize("make,message", [
    (lambda path: path.write_text('{"name": "t/reference",'), "--spec-json file {path} is not valid JSON: Expecting"),
    (lambda path: path.write_bytes(b"\xff\xfe{}"), "--spec-json file {path} cannot be read: 'utf-8' codec can't decode"),
    (lambda path: path.mkdir(), "--spec-json file {path} cannot be read: [Errno 21] Is a directory"),
    (lambda path: path.write_text(tiny().to_json().replace('"epochs"', '"epoch"')), "--spec-json file {path}: run spec t/reference: unknown key epoch"),
    (lambda path: None, "--spec-json is not valid JSON (Expecting value: line 1 column 1 (char 0)), nor an existing file ({path})"),
], ids=["invalid JSON", "not text", "a directory", "a spec error", "no such file"])
def test_a_bad_spec_json_file_is_one_line_naming_it(tmp_path, make, message, capsys):
    path = tmp_path / "spec.json"
    make(path)
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--spec-json", str(path), "--setting", "t"])
    assert str(stop.value).startswith("kdrepro: " + message.format(path=path)) and "\n" not in str(stop.value)


TEACHER_RUN, STUDENT_RUN = "takd/fashion_mnist/plane10/s0", "takd/fashion_mnist/plane10-plane2/s0"
# a tiny default setting, unpinned (this process's environment stays as it is)
TINY_SETTING = ["--config", "data.train_subset=200", "--config", "data.test_subset=100", "--config", "takd.epochs=1",
                "--config", "cpu_isa=null"]


@pytest.mark.parametrize("runs,message", [
    ([STUDENT_RUN], f"run {STUDENT_RUN} needs {TEACHER_RUN}, not trained yet: name {TEACHER_RUN} before {STUDENT_RUN}"),
    ([STUDENT_RUN, TEACHER_RUN], f"run {STUDENT_RUN} needs {TEACHER_RUN}, named after it: name {TEACHER_RUN} before {STUDENT_RUN}"),
], ids=["not named", "named after it"])
def test_train_refuses_a_run_whose_dependency_it_would_not_train_first(tmp_path, monkeypatch, runs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=re.escape(message)):
        cli.main(["train", *runs, *TINY_SETTING])
    assert not (tmp_path / "results").exists()


@needs_fashion_mnist
def test_train_trains_a_teacher_named_before_its_student(tmp_path):
    """`kdrepro train TEACHER STUDENT`: the student's dependency is trained first, by the same command."""
    proc = subprocess.run([sys.executable, "-m", "kdrepro.cli", "train", TEACHER_RUN, STUDENT_RUN, *TINY_SETTING, "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["run"] for line in proc.stdout.splitlines()] == [TEACHER_RUN, STUDENT_RUN]
    student = json.loads((tmp_path / "results/default/runs" / STUDENT_RUN / "spec.json").read_text())
    assert [n.get("frozen_from") for n in student["nodes"]] == [TEACHER_RUN, None]


# -- 4. divergence is recorded ----------------------------------------------------------------------
@needs_fashion_mnist
@pytest.mark.parametrize("lr", [10.0, 1e3, 1e6])
def test_an_exploded_run_is_recorded_as_not_trained(tmp_path, capsys, lr):
    exploded = tiny(epochs=1, optimizer=Optimizer(lr=lr))  # the loss ends finite, near 1e2 to 1e12
    metrics = train_run(exploded, tmp_path / "r", tmp_path, progress=False)
    assert metrics["trained"] is False and "chance level" in metrics["not_trained_because"]
    assert f"run {exploded.name} did not train: its best test accuracy" in capsys.readouterr().err
    assert json.loads((tmp_path / "r/metrics.json").read_text())["trained"] is False


def test_a_loss_that_grows_a_hundredfold_is_divergence_and_a_learning_run_is_not():
    spec = scratch()
    row = lambda epoch, loss, acc: {"epoch": epoch, "loss": loss, "test_acc[student]": acc}  # noqa: E731
    assert training_problem(spec, [row(1, 0.8, 70.0), row(2, 0.5, 80.0)], 10, 1000) is None
    assert training_problem(spec, [row(1, 0.8, 70.0), row(2, 1e16, 10.0)], 10, 1000) == \
        "its loss grew from 0.8 to 1e+16 at epoch 2 (diverged)"
    assert "chance level" in training_problem(spec, [row(1, 2.3, 12.0)], 10, 1000)  # 10% + 3 standard errors = 12.85%
    assert training_problem(spec, [row(1, 2.3, 13.0)], 10, 1000) is None


# -- 5. write failures: one line, nothing finished lost, the rerun continues ------------------------
def fail_writes(monkeypatch, name_part: str, error: int, after: int = 0):
    """Writes of files whose name contains `name_part` fail with `error` after `after` of them succeed."""
    real_fdopen, done = os.fdopen, []

    class Failing:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(error, os.strerror(error))

    def fdopen(fd, *args, **kw):
        handle = real_fdopen(fd, *args, **kw)
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            done.append(fd)
            if len(done) > after:
                return Failing(handle)
        return handle

    monkeypatch.setattr(os, "fdopen", fdopen)


@needs_fashion_mnist
def test_a_full_disk_keeps_the_last_resume_state_and_the_rerun_continues(runs, tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    with monkeypatch.context() as patch:
        fail_writes(patch, f".{RESUME}.", errno.ENOSPC, after=1)  # the second epoch's resume state
        with pytest.raises(WriteError, match=rf"^cannot write {run_dir}/resume.pt: no space left on the device; fix that"):
            train_run(tiny(), run_dir, runs, progress=False)
    assert load_checkpoint(run_dir / RESUME)["state"]["epoch"] == 1 and not list(run_dir.glob(".*.tmp"))
    train_run(tiny(), run_dir, runs, progress=False)
    assert same_outputs(run_dir, runs / "reference")


@needs_fashion_mnist
def test_a_read_only_results_folder_names_the_file(runs, tmp_path, monkeypatch):
    fail_writes(monkeypatch, "epochs.csv", errno.EROFS)
    with pytest.raises(WriteError, match=rf"cannot write {tmp_path}/r/epochs.csv: the file system is read-only"):
        train_run(tiny(epochs=1), tmp_path / "r", runs, progress=False)


@needs_fashion_mnist
def test_a_file_size_limit_ends_the_train_command_in_one_line(tmp_path):
    """A real limit (RLIMIT_FSIZE: root is bound by it too): the first resume state is larger than 16 kB."""
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))  # noqa: E731
    proc = subprocess.run([sys.executable, "-m", "kdrepro.cli", "train", "--spec-json", tiny(epochs=1).to_json(),
                           "--setting", "t", "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                          preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("kdrepro: cannot write results/t/runs/t/reference/resume.pt: the file would exceed "
                                  "the file-size limit (ulimit -f)")
    assert (tmp_path / "results/t/runs/t/reference/epochs.csv").exists() and not list(tmp_path.rglob("*.tmp"))


# -- 6. a killed Snakemake's lock ---------------------------------------------------------------------
@pytest.fixture
def stale_lock(tmp_path):
    """A folder with the lock a killed Snakemake leaves, and a `snakemake` on PATH whose --unlock removes it."""
    (tmp_path / ".snakemake/locks").mkdir(parents=True)
    (tmp_path / ".snakemake/locks/0.input.lock").write_text("results/default/tables/takd_table1.csv\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "snakemake").write_text('#!/bin/sh\necho "$@" > unlocked\nrm -rf .snakemake/locks/*\n')
    (bin_dir / "snakemake").chmod(0o755)
    return tmp_path


def unlock_stale(folder):
    return subprocess.run(["bash", str(REPO / "workflow/scripts/unlock_stale.sh")], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{folder / 'bin'}:{os.environ['PATH']}"})


def test_make_run_removes_the_lock_of_a_killed_snakemake(stale_lock):
    proc = unlock_stale(stale_lock)
    assert proc.returncode == 0 and "removing the locks a killed one left" in proc.stderr
    assert (stale_lock / "unlocked").read_text().startswith("--unlock") and not list((stale_lock / ".snakemake/locks").iterdir())


def test_make_run_leaves_the_lock_of_a_live_snakemake_and_says_what_to_do(stale_lock):
    live = subprocess.Popen(["snakemake", "60"], executable="/bin/sleep", cwd=stale_lock)  # argv[0] "snakemake"
    try:
        proc = unlock_stale(stale_lock)
    finally:
        live.kill()
        live.wait()
    assert proc.returncode == 0 and re.search(rf"Snakemake \(pid {live.pid}\) works in .*kill {live.pid}", proc.stderr)
    assert (stale_lock / ".snakemake/locks/0.input.lock").exists() and not (stale_lock / "unlocked").exists()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_like_any_other_file(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        save_text("x\n", tmp_path / "table.md")
    finally:
        os.umask(previous)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == mode
