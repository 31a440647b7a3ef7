"""Run specs: validation, serialisation, dependencies, and gradient routing through a graph."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from kdrepro.engine.edges import edge_losses
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec, Schedule, SpecError, check_graph


def spec(name="r", **overrides):
    fields = dict(
        name=name,
        data=Data("fashion_mnist"),
        nodes=(Node("teacher", "plane4", frozen_from="t"), Node("student", "plane2")),
        edges=(Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5, options={"temperature": 4})),
        epochs=3,
        seed=0,
    )
    fields.update(overrides)
    return RunSpec(**fields)


def test_json_round_trip_and_hash():
    s = spec(schedule=Schedule("multistep", (80, 120), reference_epochs=150))
    again = RunSpec.from_dict(__import__("json").loads(s.to_json()))
    assert again == s and again.config_hash == s.config_hash
    assert spec(epochs=4).config_hash != s.config_hash
    assert spec(data=Data("fashion_mnist", root="/elsewhere")).config_hash == spec().config_hash


def test_dependencies():
    assert spec().dependencies == ["t"]


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"epochs": -1}, "epochs must be at least 1"),
        ({"edges": (Edge(LABELS, "studnet", "ce"),)}, "unknown node 'studnet'"),
        ({"edges": (Edge("student", "teacher", "kd"),)}, "targets frozen node 'teacher'"),
        ({"edges": (Edge("teacher", "student", "kd", options={"T": 4}),)}, "no option 'T'"),
        ({"edges": (Edge("teacher", "student", "kd", gate="sometimes"),)}, "unknown gate 'sometimes'"),
        ({"eval_node": "ta"}, "eval_node 'ta'"),
        ({"save_epochs": (5,)}, "save_epochs"),
        ({"schedule": Schedule("cosine")}, "schedule.kind"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_key(overrides, message):
    with pytest.raises(SpecError, match=message):
        spec(**overrides)


def test_undefined_dependency_and_cycle():
    with pytest.raises(SpecError, match="undefined run 't'"):
        check_graph({"r": spec()})
    a = spec("a", nodes=(Node("teacher", "plane4", frozen_from="b"), Node("student", "plane2")))
    b = spec("b", nodes=(Node("teacher", "plane4", frozen_from="a"), Node("student", "plane2")))
    with pytest.raises(SpecError, match="cycle"):
        check_graph({"a": a, "b": b})


def test_milestones_scale_with_epochs():
    s = spec(epochs=15, schedule=Schedule("multistep", (80, 120), reference_epochs=150))
    assert s.scaled_milestones() == [8, 12]
    assert spec(epochs=8, schedule=Schedule("step", step_size=2)).scaled_milestones() == [2, 4, 6]


def test_gradient_reaches_only_edge_targets():
    """A KD edge a -> b trains b only; a frozen node gets no gradient at all."""
    torch.manual_seed(0)
    models = {"frozen": nn.Linear(4, 3).requires_grad_(False), "a": nn.Linear(4, 3), "b": nn.Linear(4, 3)}
    graph = spec(
        nodes=(Node("frozen", "plane2", frozen_from="t"), Node("a", "plane2"), Node("b", "plane2")),
        edges=(Edge("a", "b", "kd"), Edge("frozen", "b", "kd"), Edge(LABELS, "a", "ce")),
        eval_node="b",
    )
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    kd_ab, kd_fb, ce_a = edge_losses(graph, models, x, y, 0.5)
    (kd_ab + kd_fb).backward()
    assert models["a"].weight.grad is None
    assert models["frozen"].weight.grad is None
    assert models["b"].weight.grad.abs().sum() > 0
    ce_a.backward()
    assert models["a"].weight.grad.abs().sum() > 0


def test_test_every_enters_the_hash_only_off_its_default_and_needs_no_validation_split():
    base = RunSpec("r/s0", Data("fashion_mnist"), (Node("student", "plane2"),), (Edge(LABELS, "student", "ce"),), epochs=6, seed=0)
    assert "test_every" in base.to_dict() and replace(base, test_every=1).config_hash == base.config_hash
    sparse = replace(base, test_every=4, save_epochs=(1,))
    assert sparse.config_hash != base.config_hash
    assert [e for e in range(1, 7) if sparse.tests_after(e)] == [1, 4, 6]
    with pytest.raises(SpecError, match="test_every 2 with a validation split"):
        replace(base, test_every=2, data=Data("fashion_mnist", validation=100))
    with pytest.raises(SpecError, match="test_every must be at least 1"):
        replace(base, test_every=0)
