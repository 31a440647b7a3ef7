"""FitNets: maxout layers, the hint regressor and loss, the KD cross-entropy, the annealing gate, RMSProp and
per-parameter learning-rate scales, the multiplication counter, the stage-1 -> stage-2 hand-off, the paper
module's runs, and a smoke run of the fitnets targets."""

import math

import pytest
import torch
import yaml

from conftest import REPO, needs_fashion_mnist
from kdrepro.config import validate
from kdrepro.engine import train_run
from kdrepro.engine.optim import SGD, RMSProp
from kdrepro.engine.train import build_models, edge_losses, make_optimizer
from kdrepro.experiments import build_registry
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, SpecError
from kdrepro.losses import GATES, LOSS_INFO, LOSSES
from kdrepro.models import FeatureTap, create_model
from kdrepro.models.maxout import (ARCHS, HINT_LAYERS, Conv, FC, MaxoutConv2d, MaxoutLinear, MaxoutNet, budget_error,
                                   count_layers, count_multiplications, count_weights, hint_layers)
from kdrepro.papers.fitnets import FitNets, guided_layers, parse


def test_maxout_conv_is_the_max_over_each_units_pieces_by_hand():
    layer = MaxoutConv2d(1, 2, 1, pieces=3)
    with torch.no_grad():  # 1x1 conv: channel c = w_c * x + b_c; unit 0 takes channels 0-2, unit 1 channels 3-5
        layer.conv.weight.copy_(torch.tensor([1.0, -1.0, 2.0, 0.5, -3.0, 0.0]).view(6, 1, 1, 1))
        layer.conv.bias.copy_(torch.tensor([0.0, 0.0, -1.0, 1.0, 0.0, 0.25]))
    x = torch.tensor([[[[2.0, -1.0]]]])
    out = layer(x)
    # x=2: unit0 max(2, -2, 3) = 3; unit1 max(2, -6, 0.25) = 2. x=-1: unit0 max(-1, 1, -3) = 1; unit1 max(0.5, 3, 0.25) = 3
    assert out.shape == (1, 2, 1, 2)
    assert out.flatten().tolist() == [3.0, 1.0, 2.0, 3.0]


def test_maxout_linear_by_hand():
    layer = MaxoutLinear(2, 2, pieces=2)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]))
        layer.linear.bias.zero_()
    assert layer(torch.tensor([[3.0, 5.0]])).tolist() == [[5.0, 8.0]]  # max(3, 5), max(8, -3)


def test_multiplication_counter_on_a_small_network_counted_by_hand():
    # 1x8x8 input. h0: maxout conv 3 units x 2 pieces, 3x3, no pad -> detector 6x6, pool 2 -> 3x3.
    #   mult = 2 * 36 * 9 * 1 * 3 = 1944, weights 2 * 9 * 1 * 3 = 54
    # h1: maxout conv 4 units x 3 pieces, 2x2, pad 0 on 3x3 -> detector 2x2, no pool.
    #   mult = 3 * 4 * 4 * 3 * 4 = 576, weights 3 * 4 * 3 * 4 = 144
    # fc: maxout 5 units x 2 pieces on 4*2*2 = 16 inputs: mult = weights = 2 * 16 * 5 = 160
    # softmax: 5 * 10 = 50
    layers = [Conv(3, kernel=3, pad=0, pieces=2, pool=2), Conv(4, kernel=2, pad=0, pieces=3), FC(5, pieces=2)]
    assert count_layers(layers, 10, 1, 8) == (1944 + 576 + 160 + 50, 54 + 144 + 160 + 50)
    model = MaxoutNet(layers, 10, 1, 8)
    assert count_multiplications(model, 1, 8) == 1944 + 576 + 160 + 50
    assert count_weights(model) == 54 + 144 + 160 + 50


def test_the_paper_architectures_count_as_published_where_the_architecture_is_exact():
    mult, params = count_layers(ARCHS["fitnet4"], 10, 3, 32)
    assert round(mult / 1e6) == 382 and round(params / 1e6, 2) == 2.74  # Table 5: ~382M; the paper rounds to ~2.5M
    assert round(count_layers(ARCHS["fitnet1"], 10, 3, 32)[0] / 1e6) == 30  # ~30M
    assert round(count_layers(ARCHS["fitnet_mnist"], 10, 1, 28)[1] / 1e3) == 36  # ~36K (the paper says ~30K)
    assert create_model("fitnet4", 10).get_submodule("embedding") is not None


@pytest.mark.parametrize("budget", [30e6, 107e6, 3e6])
@pytest.mark.parametrize("depth", [3, 5, 7, 9, 11, 13])
def test_depth_family_meets_its_multiplication_budget(depth, budget):
    assert budget_error(depth, budget, 3, 32) < 0.1
    model = create_model(f"fitnet_depth{depth}", 10, 3, 32, budget=budget)
    assert abs(count_multiplications(model, 3, 32) - budget) / budget < 0.1
    assert len(model.features) == depth


HINT_PAIRS = [("maxout_teacher_cifar", s, c, 32) for s in ("fitnet1", "fitnet2", "fitnet3", "fitnet4") for c in (1, 3)]
HINT_PAIRS += [("maxout_teacher_cifar", f"fitnet_depth{d}", 1, 32) for d in (3, 5, 7, 9, 11, 13)]
HINT_PAIRS += [("maxout_teacher_mnist", "fitnet_mnist", 1, 28), ("maxout_teacher_mnist", "fitnet_mnist", 1, 32)]


@pytest.mark.parametrize("teacher,student,channels,size", HINT_PAIRS)
@pytest.mark.parametrize("width", [1.0, 0.125])
def test_regressor_output_matches_the_hint_layer_for_every_pair(teacher, student, channels, size, width):
    options = {"budget": 3e6} if student.startswith("fitnet_depth") else {"width": width}
    t = create_model(teacher, 10, channels, size, width=width).eval()
    s = create_model(student, 10, channels, size, **options).eval()
    x = torch.randn(2, channels, size, size)
    with FeatureTap(t, [hint_layers(teacher)]) as tap_t, FeatureTap(s, [hint_layers(student)]) as tap_s:
        t(x), s(x)
    hint, guided = tap_t.features[hint_layers(teacher)], tap_s.features[hint_layers(student)]
    regressor = LOSS_INFO["fitnets_hint"].module(hint, guided)
    _, regressed = regressor(hint, guided)
    assert regressed.shape == hint.shape
    conv = regressor.net.conv
    assert conv.kernel_size == (guided.shape[2] - hint.shape[2] + 1, guided.shape[3] - hint.shape[3] + 1)  # official rule
    assert conv.out_channels == hint.shape[1] * 2 and conv.padding == (0, 0)  # maxout with the hint layer's 2 pieces


def test_hint_loss_by_hand():
    hint = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # 1 sample, 1 channel, 2x2
    regressed = torch.tensor([[[[0.0, 2.0], [1.0, 5.0]]]])
    # Eq. 3: 1/2 * ((1)^2 + 0 + (2)^2 + (1)^2) = 3
    assert LOSSES["fitnets_hint"](hint, regressed, None).tolist() == [3.0]
    # HintCost on c01b: 1/2 * sum over rows -> per (channel, column): col0 (1 + 4) / 2, col1 (0 + 1) / 2; mean = 1.5
    assert LOSSES["fitnets_hint"](hint, regressed, None, reduction="official").tolist() == [1.5]


def test_kd_cross_entropy_has_no_tau_squared_and_kl_gradients():
    teacher, student = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.5, 0.2, 0.1]], requires_grad=True)
    tau = 3.0
    p = [math.exp(v / tau) for v in (2.0, 0.0, -1.0)]
    p = [v / sum(p) for v in p]
    z = [v / tau for v in (0.5, 0.2, 0.1)]
    log_q = [v - math.log(sum(math.exp(u) for u in z)) for v in z]
    ce = LOSSES["kd_ce"](teacher, student, None, temperature=tau)
    assert ce.item() == pytest.approx(-sum(a * b for a, b in zip(p, log_q)), rel=1e-6)
    (grad_ce,) = torch.autograd.grad(ce.sum(), student)
    kl = LOSSES["kd"](teacher, student, None, temperature=tau) / tau**2  # Hinton's tau^2 KL without the tau^2
    (grad_kl,) = torch.autograd.grad(kl.sum(), student)
    assert torch.allclose(grad_ce, grad_kl, atol=1e-6)  # CE = KL + the teacher's entropy


def test_linear_decay_gate_by_hand():
    labels = torch.zeros(2, dtype=torch.long)
    gate = lambda p: GATES["linear_decay"](None, labels, p, start=4.0, end=1.0, begin=0.1, until=0.7)[0].item()  # noqa: E731
    assert gate(0.0) == 4.0 and gate(0.1) == 4.0
    assert gate(0.4) == pytest.approx(2.5)  # half-way: 4 - 3 * 0.5
    assert gate(0.7) == pytest.approx(1.0) and gate(1.0) == pytest.approx(1.0)
    # the official CIFAR schedule on a 288-epoch run: lambda 4 -> 1 over epochs 5..400 stops part-way, at about 1.85
    official = GATES["linear_decay"](None, labels, 1.0, start=4.0, end=1.0, begin=5 / 288, until=400 / 288)[0].item()
    assert official == pytest.approx(4 - 3 * (1 - 5 / 288) / (395 / 288), rel=1e-6) and 1.8 < official < 1.9


def test_gate_options_are_checked_and_left_out_of_old_hashes():
    spec = lambda **kw: RunSpec("r", Data("fashion_mnist"), (Node("t", "plane2", frozen_from="x"), Node("student", "plane2")),  # noqa: E731
                                (Edge("t", "student", "kd_ce", **kw),), epochs=1, seed=0)
    with pytest.raises(SpecError, match="takes no option 'slope'"):
        spec(gate="linear_decay", gate_options={"slope": 1})
    plain = spec().to_dict()
    assert "gate_options" not in plain["edges"][0] and "init_layers" not in plain["nodes"][1] and "kind" not in plain["optimizer"]
    decayed = spec(gate="linear_decay", gate_options={"start": 4.0})
    assert RunSpec.from_dict(decayed.to_dict()) == decayed


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_rmsprop_matches_torch(weight_decay):
    torch.manual_seed(0)
    ours = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    mine = RMSProp(ours, lr=0.01, alpha=0.9, eps=1e-5, weight_decay=weight_decay)
    ref = torch.optim.RMSprop(theirs, lr=0.01, alpha=0.9, eps=1e-5, weight_decay=weight_decay)
    x = torch.randn(7, 5)
    for _ in range(5):
        for params, opt in ((ours, mine), (theirs, ref)):
            opt.zero_grad()
            ((x @ params[0] + params[1]).tanh().sum()).backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("kind", ["sgd", "rmsprop"])
def test_lr_scales_match_torch_param_groups(kind):
    torch.manual_seed(1)
    ours = [torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    scales = [0.05, 1.0, 0.05]
    if kind == "sgd":
        mine = SGD(ours, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, lr_scales=scales)
        ref = torch.optim.SGD([{"params": [theirs[0], theirs[2]], "lr": 0.005}, {"params": [theirs[1]]}], lr=0.1, momentum=0.9,
                              weight_decay=1e-4)
    else:
        mine = RMSProp(ours, lr=0.01, alpha=0.9, eps=1e-5, weight_decay=0.0, lr_scales=scales)
        ref = torch.optim.RMSprop([{"params": [theirs[0], theirs[2]], "lr": 0.0005}, {"params": [theirs[1]]}], lr=0.01,
                                  alpha=0.9, eps=1e-5)
    x = torch.randn(6, 4)
    for _ in range(4):
        for params, opt in ((ours, mine), (theirs, ref)):
            opt.zero_grad()
            ((x @ params[0] + params[1] * params[2]).sin().sum()).backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


def test_parameters_without_gradients_are_left_alone():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = RMSProp([a, b], lr=0.1, alpha=0.9, eps=1e-8, weight_decay=0.0)
    for _ in range(2):
        opt.zero_grad()
        (a * 3).sum().backward()
        opt.step()
    assert torch.equal(b, torch.ones(2)) and not torch.equal(a, torch.ones(2))


def test_templates_and_guided_layers():
    assert parse("fitnet:fitnet4") == ("fitnet", "fitnet4", None)
    assert parse("kd:fitnet_depth7@30") == ("kd", "fitnet_depth7", 30.0)
    for bad in ("fitnet:fitnet_depth7", "kd:fitnet4@30", "ht:fitnet4"):
        with pytest.raises(SpecError):
            parse(bad)
    assert guided_layers("fitnet4") == tuple(f"features.h{i}" for i in range(11))  # `hints: [[10, 1]]`: layers 0..10
    assert guided_layers("fitnet_mnist")[-1] == "features.h3" and HINT_LAYERS["maxout_teacher_cifar"] == "features.h1"


def registry_for(setting: str, **overrides):
    config = yaml.safe_load((REPO / f"config/{setting}.yaml").read_text())
    config.update(overrides)
    return build_registry(validate(config), REPO / "config/experiments")


def test_paper_module_builds_the_two_stages_and_the_baselines():
    registry = registry_for("config")
    runs = registry.runs
    hint = runs["fitnets/fashion_mnist/hint/maxout_teacher_cifar-fitnet4/s0"]
    fitnet = runs["fitnets/fashion_mnist/fitnet/maxout_teacher_cifar-fitnet4/s0"]
    assert [e.loss for e in hint.edges] == ["fitnets_hint"]  # no label edge in stage 1
    assert hint.edges[0].options["source_layer"] == "features.h1" and hint.edges[0].options["target_layer"] == "features.h10"
    student = fitnet.node("student")
    assert student.init_from == hint.name and student.init_layers == guided_layers("fitnet4")
    assert fitnet.dependencies == sorted([hint.name, "fitnets/fashion_mnist/scratch/maxout_teacher_cifar/s0"])
    kd = [e for e in fitnet.edges if e.loss == "kd_ce"][0]
    assert kd.gate == "linear_decay" and kd.gate_options["start"] == 4.0 and kd.options == {"temperature": 3}
    assert fitnet.optimizer.kind == "rmsprop" and fitnet.optimizer.momentum == 0
    # the baselines of the same student: standard backprop and KD, same recipe
    assert "fitnets/fashion_mnist/scratch/fitnet4/s0" in runs and "fitnets/fashion_mnist/kd/maxout_teacher_cifar-fitnet4/s0" in runs
    # the official choices behind named options
    tau2 = registry_for("config", fitnets={**registry.config["fitnets"], "tau_squared": True, "lr_scale": 0.05}).runs
    fit2 = tau2["fitnets/fashion_mnist/fitnet/maxout_teacher_cifar-fitnet4/s0"]
    assert any(e.loss == "kd" for e in fit2.edges) and fit2.node("student").init_lr_scale == 0.05
    # MNIST and CIFAR-100 are not in the default setting: their tables show the paper's values beside "not run"
    assert not any("/mnist/" in r or "/cifar100/" in r for r in runs)
    assert FitNets(registry, registry.experiments["fitnets"]).datasets("cifar10") == ["fashion_mnist"]


@needs_fashion_mnist
def test_hand_off_guided_layers_start_from_stage_one_and_the_rest_from_the_fresh_init(tmp_path):
    data = Data("fashion_mnist", train_subset=128, test_subset=64, pad_to=32)
    opts = {"width": 0.0625, "init_range": 0}
    rms = Optimizer(kind="rmsprop", lr=0.001, momentum=0.0, alpha=0.9, eps=1e-5)
    teacher = RunSpec("t/teacher", data, (Node("student", "maxout_teacher_cifar", opts),), (Edge(LABELS, "student", "ce"),),
                      epochs=1, seed=0, batch_size=64, optimizer=rms)
    train_run(teacher, tmp_path / teacher.name, tmp_path, progress=False)
    frozen = Node("teacher", "maxout_teacher_cifar", opts, frozen_from="t/teacher")
    hint_edge = Edge("teacher", "student", "fitnets_hint", options={"source_layer": "features.h1", "target_layer": "features.h5"})
    stage1 = RunSpec("t/hint", data, (frozen, Node("student", "fitnet1", opts)), (hint_edge,), epochs=1, seed=0, batch_size=64,
                     optimizer=rms)
    metrics = train_run(stage1, tmp_path / stage1.name, tmp_path, progress=False)
    assert math.isfinite(metrics["final_test_acc"])
    saved = torch.load(tmp_path / "t/hint/checkpoint.pt", weights_only=False)
    assert set(saved["edges"]) == {"edge0:fitnets_hint:teacher->student"}  # the regressor is checkpointed with the run
    after = saved["model"]["state_dict"]
    torch.manual_seed(0)  # the initialisation every run of seed 0 gives its first trainable node
    initial = create_model("fitnet1", 10, 1, 32, **opts).state_dict()
    guided = guided_layers("fitnet1")
    # stage 1 trained the guided layers only: the later layers got no gradient and kept their initialisation
    assert not torch.equal(after["features.h5.0.conv.weight"], initial["features.h5.0.conv.weight"])
    assert torch.equal(after["features.h6.0.conv.weight"], initial["features.h6.0.conv.weight"])
    assert torch.equal(after["classifier.weight"], initial["classifier.weight"])
    student = Node("student", "fitnet1", opts, init_from="t/hint", init_layers=guided, init_lr_scale=0.5)
    kd = (Edge(LABELS, "student", "ce"), Edge("teacher", "student", "kd_ce", gate="linear_decay", gate_options={"start": 4.0, "end": 1.0}))
    stage2 = RunSpec("t/fitnet", data, (frozen, student), kd, epochs=1, seed=0, batch_size=64, optimizer=rms)
    from kdrepro.engine.train import load_data

    data_for = load_data(stage2, "cpu")
    models = build_models(stage2, data_for, tmp_path, "cpu")
    start = models["student"].state_dict()
    for key, value in start.items():
        expected = after[key] if any(key.startswith(g + ".") for g in guided) else initial[key]
        assert torch.equal(value, expected), key
    optimizer = make_optimizer(stage2, models)
    names = [n for n, _ in models["student"].named_parameters()]
    scales = dict(zip(names, optimizer.lr_scales))
    assert scales["features.h0.0.conv.weight"] == 0.5 and scales["features.h5.0.conv.bias"] == 0.5
    assert scales["features.h6.0.conv.weight"] == 1.0 and scales["classifier.weight"] == 1.0
    losses = edge_losses(stage2, models, *next(iter(data_for.eval_batches("train"))), progress=0.0)
    assert len(losses) == 2 and all(torch.isfinite(v) for v in losses)
    assert train_run(stage2, tmp_path / stage2.name, tmp_path, progress=False)["epochs"] == 1
    with pytest.raises(SpecError, match="need init_from"):
        RunSpec("bad", data, (Node("student", "fitnet1", init_layers=guided),), (Edge(LABELS, "student", "ce"),), epochs=1, seed=0)


@pytest.mark.workflow
@pytest.mark.slow
@needs_fashion_mnist
def test_smoke_run_of_the_fitnets_targets(smoke_dag):
    import pandas as pd

    wd = smoke_dag
    tables = wd / "results/smoke/tables"
    table1 = pd.read_csv(tables / "fitnets_table1.csv")
    ours = table1[table1.dataset == "fashion_mnist"]
    measured = ours[ours.algorithm.isin(["FitNet", "Teacher", "Standard backprop (FitNet 4)", "KD (FitNet 4)"])]
    assert len(measured) == 4 and measured.ours_mean.between(0, 100).all()
    assert table1.loc[table1.algorithm == "FitNet", "paper"].tolist() == [91.61]
    for name in ("fitnets_table2", "fitnets_table3", "fitnets_table4"):  # not in the smoke setting: the paper's values, not run
        frame = pd.read_csv(tables / f"{name}.csv")
        assert frame.ours.str.startswith("not").all() and frame.loc[frame.algorithm.isin(["FitNet", "Teacher"]), "paper"].notna().all()
    assert pd.read_csv(tables / "fitnets_table_aflw.csv").ours.str.contains("AFLW data is not configured").all()
    table5 = pd.read_csv(tables / "fitnets_table5.csv")
    assert table5.network.tolist() == ["Teacher", "FitNet 1", "FitNet 2", "FitNet 3", "FitNet 4"]
    assert (table5.speedup > 0).all() and table5.loc[0, "speedup"] == 1 and table5.mult_full.iloc[-1] == 381_941_128
    assert "median of" in (tables / "fitnets_table5.md").read_text()
    assert (wd / "figures/smoke/fitnets_fig3.png").stat().st_size > 10_000
    fig3 = pd.read_csv(tables / "fitnets_fig3.csv")
    assert set(fig3.method) == {"backprop", "KD", "hints (FitNet)"} and set(fig3.depth) == {3, 5}
