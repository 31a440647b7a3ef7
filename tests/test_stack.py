"""Runs stacked into one model (torch.func) give each run what training it alone gives."""

import json

import pytest
import torch

from conftest import needs_fashion_mnist
from kdrepro.engine import TrainingError, train_run
from kdrepro.engine.stack import train_stacked
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule

pytestmark = needs_fashion_mnist

TEST_IMAGES = 128


def data(augment: bool) -> Data:
    return Data("fashion_mnist", train_subset=384, test_subset=TEST_IMAGES, pad_to=32, normalization="half",
                crop_padding=4 if augment else 0, flip=augment)


def teacher(seed: int) -> RunSpec:
    return RunSpec(name=f"t/s{seed}", data=data(False), nodes=(Node("student", "plane4"),), edges=(Edge(LABELS, "student", "ce"),),
                   epochs=1, seed=seed, batch_size=64, optimizer=Optimizer(lr=0.05))


def kd(seed: int, augment: bool = False, **kw) -> RunSpec:
    """Each seed's student learns from its own seed's teacher, as the papers' seeds do."""
    return RunSpec(
        name=f"kd/s{seed}", data=data(augment),
        nodes=(Node("teacher", "plane4", frozen_from=f"t/s{seed}"), Node("student", "plane2")),
        edges=(Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5, options={"temperature": 4.0})),
        epochs=2, seed=seed, batch_size=64, optimizer=Optimizer(lr=0.02, weight_decay=5e-4),
        schedule=Schedule("multistep", (2,), gamma=0.1), **kw,
    )


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train_run(teacher(seed), root / f"t/s{seed}", root, progress=False)
    return root


def rows(path):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, map(float, line.split(",")))) for line in lines[1:]]


@pytest.fixture
def float64():
    """Both paths in float64: what stacking changes is the order of sums, whose rounding float32 training
    amplifies into differences that depend on the host's kernels (AVX2 and AVX-512 hosts differ by several
    percent in a BatchNorm running mean after 12 steps). In float64 the two paths agree to ~1e-12 on any
    host, so a tolerance of 1e-7 leaves five orders of magnitude and still catches any real difference (a
    run given another run's seed, batch order, augmentation or teacher differs at the first step)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# without augmentation the teachers' logits are cached; with it they run inside the stacked step
@pytest.mark.parametrize("augment", [False, True])
def test_stacked_runs_equal_separate_runs(teachers, tmp_path, augment, float64):
    specs = [kd(0, augment), kd(1, augment)]
    separate = [train_run(s, tmp_path / "separate" / s.name, teachers, progress=False) for s in specs]
    stacked = train_stacked(specs, [tmp_path / "stacked" / s.name for s in specs], teachers, progress=False)
    for spec, alone, together in zip(specs, separate, stacked):
        assert together["stacked_runs"] == 2 and together["config_hash"] == alone["config_hash"]
        # logits agree to ~1e-12: an argmax flip would need two logits closer than that
        assert together["final_test_acc"] == alone["final_test_acc"]
        for a, b in zip(rows(tmp_path / "separate" / spec.name / "epochs.csv"), rows(tmp_path / "stacked" / spec.name / "epochs.csv")):
            a.pop("seconds"), b.pop("seconds")  # wall-clock, the one column that may differ
            assert a == pytest.approx(b, rel=1e-7, abs=1e-9)
        weights = [torch.load(tmp_path / path / spec.name / "checkpoint.pt")["model"]["state_dict"] for path in ("separate", "stacked")]
        assert weights[0].keys() == weights[1].keys()
        for name, tensor in weights[0].items():
            assert tensor.dtype == weights[1][name].dtype, name
            if tensor.is_floating_point():
                assert tensor.dtype == torch.float64 and torch.allclose(tensor, weights[1][name], rtol=1e-7, atol=1e-9), name
            else:
                assert torch.equal(tensor, weights[1][name]), name
    # the runs differ from each other (own seed, own teacher): the stack did not mix them up
    assert stacked[0]["final_test_acc"] != stacked[1]["final_test_acc"] or rows(tmp_path / "stacked/kd/s0/epochs.csv") != rows(
        tmp_path / "stacked/kd/s1/epochs.csv")


def test_a_finished_run_is_kept_and_only_the_rest_train(teachers, tmp_path):
    specs = [kd(0), kd(1)]
    dirs = [tmp_path / s.name for s in specs]
    first = train_run(specs[0], dirs[0], teachers, progress=False)
    results = train_stacked(specs, dirs, teachers, progress=False)
    assert results[0] == first and results[1]["stacked_runs"] == 1
    assert json.loads((dirs[1] / "metrics.json").read_text()) == results[1]


@pytest.mark.parametrize("other,message", [
    (kd(0), "distinct seeds"),
    (RunSpec(name="x/s1", data=data(False), nodes=(Node("student", "plane4"),), edges=(Edge(LABELS, "student", "ce"),),
             epochs=2, seed=1), "not one graph"),
    (kd(1, save_epochs=(1,)), "not one graph"),
])
def test_runs_that_are_not_one_graph_are_refused_before_training(tmp_path, other, message):
    with pytest.raises(TrainingError, match=message):
        train_stacked([kd(0), other], [tmp_path / "a", tmp_path / "b"], tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_what_stacking_does_not_support_is_named(tmp_path):
    specs = [kd(s, save_epochs=(1,)) for s in (0, 1)]
    with pytest.raises(TrainingError, match="save_epochs"):
        train_stacked(specs, [tmp_path / "a", tmp_path / "b"], tmp_path, progress=False)
