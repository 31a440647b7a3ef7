"""Shared fixtures. Tests run offline; the engine tests use the real Fashion-MNIST from
Debian's dataset-fashion-mnist (installed by the bootstrap), on small subsets."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CACHE = Path.home() / ".cache/kdrepro/fashion_mnist"


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    """kdrepro reads config/ and workflow/schemas/ relative to the working directory."""
    monkeypatch.chdir(REPO)


def fashion_mnist_available() -> bool:
    return FASHION_MNIST.is_dir() or FASHION_CACHE.is_dir()


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(), reason="Fashion-MNIST not on disk (run `make setup`, which installs it)"
)


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def snakemake(cwd, *args, check=True):
    # the jobs call `kdrepro`: the environment running the tests comes first on their PATH
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_dag(request, tmp_path_factory) -> Path:
    """The whole DAG of the smoke setting (every paper's targets), run once per test session in a copy
    of the workflow; each paper's smoke test checks its own outputs there. Minutes of work: only tests
    marked slow may use it, so that `make test` stays fast."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} uses smoke_dag but is not marked slow")
    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not on disk (run `make setup`, which installs it)")
    wd = copy_workflow(tmp_path_factory.mktemp("smoke"))
    plant_stale_best_graph(wd / "results/smoke/search/ktg_fashion_mnist_n2")
    snakemake(wd, "--configfile", "config/smoke.yaml", "--cores", "2")
    return wd


# A best.json that the search cannot choose (plane2 is no candidate), as a clone finds a committed file
# from another host: the search runs again, and the DAG must follow the graph it chooses, not this one.
STALE_GRAPH = {"models": ["resnet32", "plane2"], "gates": {"0->1": "through", "0->2": "through", "1->2": "through", "2->1": "through"}}


def plant_stale_best_graph(study_dir: Path) -> None:
    study_dir.mkdir(parents=True)
    (study_dir / "best.json").write_text(json.dumps({"graph": STALE_GRAPH, "best_trial": 0, "best_value": 99.0}))
