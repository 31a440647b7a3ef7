"""Committed results name the code that made them, and can be checked: the cheapest committed runs of
every committed setting, trained again here, give the committed numbers digit for digit."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, needs_fashion_mnist

from kdrepro import provenance
from kdrepro.experiments import Registry
from kdrepro.report.runs_index import last_loss, runs_target

RETRAINED_PER_SETTING = 2  # the cheapest runs that need no other run's checkpoint


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_source_commit_names_the_checkout_and_says_when_its_source_differs(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    for folder in ("src", "docs"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "first")
    head = git(tmp_path, "rev-parse", "HEAD")
    monkeypatch.setattr(provenance, "REPO", tmp_path)

    def commit() -> str | None:
        provenance.source_commit.cache_clear()
        return provenance.source_commit()

    assert commit() == head
    (tmp_path / "docs" / "a.py").write_text("x = 2\n")  # not code that a run depends on
    assert commit() == head
    (tmp_path / "src" / "new.py").write_text("y = 1\n")  # a new source file counts
    assert commit() == f"{head}-dirty"
    (tmp_path / "src" / "new.py").unlink()
    (tmp_path / "src" / "a.py").write_text("x = 3\n")
    assert commit() == f"{head}-dirty"
    monkeypatch.setattr(provenance, "REPO", tmp_path / "src" / "missing")
    assert commit() is None
    provenance.source_commit.cache_clear()


def test_runs_index_keeps_each_finished_runs_numbers_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = Registry({"setting": "s"})
    registry.runs = {"p/a/s0": None, "p/b/s0": None}  # the index reads only the runs' folders
    folder = registry.run_dir("p/a/s0")
    folder.mkdir(parents=True)
    metrics = {"trained": False, "not_trained_because": "chance", "best_test_acc": 10.1, "final_test_acc": 9.9,
               "best_epoch": 1, "epochs": 2, "config_hash": "abc", "source_commit": "f00-dirty",
               "kernels": {"cpu_isa": "avx2", "cpu_capability": "AVX512"}, "wall_seconds": 1.5}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "epochs.csv").write_text("epoch,loss\n1,2.5\n2,0.12345678901234567\n")
    runs_target(registry).render()
    rows = list(csv.DictReader((tmp_path / "results/s/runs.csv").open()))
    assert [r["run"] for r in rows] == ["p/a/s0"]  # p/b/s0 has not finished
    row = rows[0]
    assert row["final_loss"] == "0.12345678901234567"
    assert (row["trained"], row["source_commit"], row["cpu_isa"], row["cpu_capability"]) == ("False", "f00-dirty", "avx2", "AVX512")
    assert row["test_acc_at_best_val"] == ""


def committed_settings() -> list[tuple[Path, Path]]:
    """(the committed runs.csv, the shipped setting file that made it), for every committed results/<setting>."""
    listed = subprocess.run(["git", "ls-files", "results/*/runs.csv"], cwd=REPO, capture_output=True, text=True).stdout.split()
    files = {yaml.safe_load(path.read_text())["setting"]: path for path in sorted((REPO / "config").glob("*.yaml"))}
    return [(REPO / index, files[Path(index).parent.name]) for index in listed]


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("index,setting_file", committed_settings(), ids=lambda p: p.parent.name if p.name == "runs.csv" else p.name)
def test_cheapest_committed_runs_retrain_bit_for_bit(index, setting_file, tmp_path):
    from kdrepro import config as settings
    from kdrepro.assemble import build_registry

    setting = settings.load([setting_file], {})
    registry = build_registry(setting)
    rows = list(csv.DictReader(index.open()))
    stale = [r["run"] for r in rows if r["run"] in registry.runs and registry.runs[r["run"]].config_hash != r["config_hash"]]
    assert not stale, f"{index} holds runs whose specs have changed since (regenerate it): {', '.join(stale[:5])}"
    independent = [r for r in rows if r["run"] in registry.runs and not registry.runs[r["run"]].dependencies]
    cheapest = sorted(independent, key=lambda r: float(r["wall_seconds"]))[:RETRAINED_PER_SETTING]
    assert cheapest, f"{index} lists no run that needs no other run"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for row in cheapest:
        subprocess.run(["kdrepro", "train", row["run"], "--configfile", str(setting_file), "--no-progress",
                        "--threads", str(setting["threads_per_job"])], cwd=tmp_path, env=env, check=True, capture_output=True)
    retrained = Registry(setting)
    for row in cheapest:
        folder = tmp_path / retrained.run_dir(row["run"])
        metrics = json.loads((folder / "metrics.json").read_text())
        again = {"best_test_acc": str(metrics["best_test_acc"]), "final_test_acc": str(metrics["final_test_acc"]),
                 "final_loss": last_loss(folder / "epochs.csv")}
        assert again == {key: row[key] for key in again}, f"{row['run']} (committed at {row['source_commit']})"
