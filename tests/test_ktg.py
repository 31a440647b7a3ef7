"""KTG: the gates' per-sample weights by hand, KD and DML graphs equal to hand-written KD and DML steps
(losses and gradients), the graph -> run spec translation, the WRN models, the paper module, its search
modes, and a smoke run of the ktg targets."""

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import STALE_GRAPH, setting, snakemake
from kdrepro.assemble import assemble
from kdrepro.data.device import DeviceData
from kdrepro.data.sources import DatasetInfo, Split
from kdrepro.engine.edges import edge_losses
from kdrepro.engine.train import build_models
from kdrepro.graph import LABELS, SpecError
from kdrepro.losses import GATES, LOSSES
from kdrepro.catalog import model_info
from kdrepro.models.zoo import create_model
from kdrepro.search_space import Graph, edge_names

# -- gates -----------------------------------------------------------------------------------------

SOURCE = torch.tensor([[2.0, 0.1, -1.0], [0.0, 3.0, 0.5], [1.0, 0.0, 4.0], [0.2, 0.1, 0.0]])  # argmax 0, 1, 2, 0
LABELS_ = torch.tensor([0, 2, 2, 1])


@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_each_gate_weights_the_samples_as_the_paper_says(progress):
    assert GATES["through"](SOURCE, LABELS_, progress).tolist() == [1, 1, 1, 1]  # Eq. 3
    assert GATES["cutoff"](SOURCE, LABELS_, progress).tolist() == [0, 0, 0, 0]  # Eq. 4
    assert GATES["linear"](SOURCE, LABELS_, progress).tolist() == pytest.approx([progress] * 4)  # Eq. 5: c / c_end
    # Eq. 6: only the samples the *source* gets right (argmax 0, 1, 2, 0 against labels 0, 2, 2, 1)
    assert GATES["correct"](SOURCE, LABELS_, progress).tolist() == [1, 0, 1, 0]
    # from the label node (the one-hot label is always right) Correct passes everything, like Through
    assert GATES["correct"](None, LABELS_, progress).tolist() == [1, 1, 1, 1]


def test_a_gated_edge_loss_is_the_batch_mean_of_gate_times_per_sample_loss():
    """The official code's gates: Through = mean, Correct = mean(loss * mask), Linear = mean * k / k_end."""
    torch.manual_seed(0)
    target = torch.randn(4, 3)
    kl = LOSSES["kd"](SOURCE, target, LABELS_, temperature=1.0)
    p_s, log_p_t = F.softmax(SOURCE, 1), F.log_softmax(target, 1)
    by_hand = [sum(p_s[i, j].item() * (math.log(p_s[i, j].item()) - log_p_t[i, j].item()) for j in range(3)) for i in range(4)]
    assert kl.tolist() == pytest.approx(by_hand, rel=1e-5)
    # the official KLLoss, teacher * log(teacher / (student + 1e-10) + 1e-10), agrees to the epsilons
    official = (p_s * torch.log(p_s / (F.softmax(target, 1) + 1e-10) + 1e-10)).sum(1)
    assert kl.tolist() == pytest.approx(official.tolist(), abs=1e-6)
    mask = [1, 0, 1, 0]
    assert (GATES["correct"](SOURCE, LABELS_, 0.5) * kl).mean().item() == pytest.approx(sum(m * v for m, v in zip(mask, by_hand)) / 4)
    assert (GATES["linear"](SOURCE, LABELS_, 0.25) * kl).mean().item() == pytest.approx(0.25 * sum(by_hand) / 4)


# -- KD and DML as graphs --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ktg():
    _, papers = assemble(setting("config", "smoke", setting="ktgunit"))
    return papers["ktg"]


def tiny_data(n=16, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    info = DatasetInfo("fake", classes, 1, 28, (0.5,), (0.25,))
    return DeviceData(Split(images, labels), Split(images, labels), info, pad_to=32, normalization="none")


def batch(data):
    images, labels, _ = next(data.train_batches(16, torch.Generator().manual_seed(1)))
    return images, labels


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_the_kd_graph_is_hinton_kd(ktg, tmp_path):
    """KD = the frozen pre-trained teacher -> Through -> student at T = 2, plus the labels: same loss, same gradient."""
    spec = ktg.registry.runs[ktg.runs("kd:resnet110>resnet32", "fashion_mnist")[0]]
    assert [n.trainable for n in spec.nodes] == [True, False] and spec.node("node2").frozen_from
    assert [(e.source, e.target, e.loss, e.gate) for e in spec.edges] == [(LABELS, "node1", "ce", "through"), ("node2", "node1", "kd", "through")]
    data = tiny_data()
    teacher_run = spec.node("node2").frozen_from
    ckpt_dir = tmp_path / teacher_run
    ckpt_dir.mkdir(parents=True)
    # a "pre-trained" teacher: any fixed weights, saved as the engine's checkpoint
    from kdrepro.engine.checkpoint import model_record, save_torch

    node = spec.node("node2")
    teacher = create_model(node.arch, 10, 1, 32, **node.options)
    from kdrepro.engine.checkpoint import FORMAT

    save_torch({"format": FORMAT, "model": model_record(node.arch, node.options, 10, teacher), "nodes": {}}, ckpt_dir / "checkpoint.pt")
    models = build_models(spec, data, tmp_path, "cpu")
    images, labels = batch(data)
    losses = edge_losses(spec, models, images, labels, progress=0.5)
    total = torch.stack(losses).sum()
    total.backward()
    graph_grads = grads(models["node1"])
    # by hand: CE + T^2 KL(softmax(t/T) || softmax(s/T)), T = 2, teacher in eval mode without gradient
    student = models["node1"]
    student.zero_grad()
    with torch.no_grad():
        t = models["node2"](images)
    s = student(images)
    tau = 2.0
    p_t = F.softmax(t / tau, 1)
    by_hand = F.cross_entropy(s, labels) + tau**2 * (p_t * (torch.log(p_t) - F.log_softmax(s / tau, 1))).sum(1).mean()
    by_hand.backward()
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-6)
    for a, b in zip(graph_grads, grads(student)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in models["node2"].parameters())


def test_the_dml_graph_is_deep_mutual_learning(ktg, tmp_path):
    """DML = every gate Through: each node minimises CE + KL(p_other || p_self), the other detached."""
    spec = ktg.registry.runs[ktg.runs("dml:resnet32,resnet110", "fashion_mnist")[0]]
    assert all(n.trainable for n in spec.nodes)
    assert sorted((e.source, e.target, e.loss, e.gate) for e in spec.edges) == sorted([
        (LABELS, "node1", "ce", "through"), ("node2", "node1", "kd", "through"),
        (LABELS, "node2", "ce", "through"), ("node1", "node2", "kd", "through")])
    assert all(e.options == {"temperature": 1.0, "class_reduction": "sum"} for e in spec.edges if e.loss == "kd")
    data = tiny_data()
    models = build_models(spec, data, tmp_path, "cpu")
    images, labels = batch(data)
    losses = edge_losses(spec, models, images, labels, progress=0.0)
    per_node = {t: sum(v for e, v in zip(spec.edges, losses) if e.target == t) for t in ("node1", "node2")}
    torch.stack(losses).sum().backward()
    graph_grads = {n: grads(models[n]) for n in ("node1", "node2")}
    # by hand (Zhang et al. 2018): L_1 = CE(z_1) + KL(p_2 || p_1), L_2 = CE(z_2) + KL(p_1 || p_2)
    for m in (models["node1"], models["node2"]):
        m.zero_grad()
    z1, z2 = models["node1"](images), models["node2"](images)

    def kl(p_logits, q_logits):
        p = F.softmax(p_logits, 1)
        return (p * (F.log_softmax(p_logits, 1) - F.log_softmax(q_logits, 1))).sum(1).mean()

    l1 = F.cross_entropy(z1, labels) + kl(z2.detach(), z1)
    l2 = F.cross_entropy(z2, labels) + kl(z1.detach(), z2)
    (l1 + l2).backward()
    assert per_node["node1"].item() == pytest.approx(l1.item(), rel=1e-6)
    assert per_node["node2"].item() == pytest.approx(l2.item(), rel=1e-6)
    for name in ("node1", "node2"):
        for a, b in zip(graph_grads[name], grads(models[name])):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_graph_to_spec_freezes_all_cutoff_nodes_and_drops_cutoff_edges(ktg):
    gates = {e: "cutoff" for e in edge_names(3)}
    gates.update({"0->1": "through", "2->1": "correct", "3->1": "linear", "1->3": "through"})  # node 2: all cut off
    graph = Graph(("resnet32", "resnet110", "wrn28_2"), gates)
    assert graph.frozen(2) and not graph.frozen(1) and not graph.frozen(3)
    specs = ktg.graph_specs("x/probe", "fashion_mnist", graph, seed=0)
    spec = specs["x/probe"]
    pretrained = ktg.single("resnet110", "fashion_mnist", 0, pretrain=True)
    assert spec.node("node2").frozen_from == pretrained.name and list(specs) == [pretrained.name, "x/probe"]
    assert {(e.source, e.target, e.gate) for e in spec.edges} == {
        (LABELS, "node1", "through"), ("node2", "node1", "correct"), ("node3", "node1", "linear"), ("node1", "node3", "through")}
    assert spec.node("node1").options["shortcut"] == "zeropad"  # the official code's option-A ResNets
    assert spec.optimizer.nesterov and spec.optimizer.weight_decay == 5e-4 and spec.data.normalization == "none"
    assert spec.data.validation == ktg.settings["validation"]  # every KTG run leaves the search's validation images out
    with pytest.raises(ValueError, match="gates"):
        Graph(("resnet32",), {})


def test_linear_gate_rises_to_one_with_the_update_counter(ktg, tmp_path, monkeypatch):
    """The engine's progress (the Linear gate's c / c_end) is 0 at the first update and 1 at the last."""
    from kdrepro.engine import train as engine

    seen = []
    real = engine.edge_losses

    def spy(spec, models, images, labels, progress, known=None):
        seen.append(progress)
        return real(spec, models, images, labels, progress, known)

    monkeypatch.setattr(engine, "edge_losses", spy)
    data = tiny_data(n=40)
    spec = ktg.graph_specs("x/linear", "fashion_mnist", Graph.all_through(["resnet32"]), seed=0, epochs=2)["x/linear"]
    import dataclasses

    spec = dataclasses.replace(spec, batch_size=16, data=dataclasses.replace(spec.data, validation=0))
    models = build_models(spec, data, tmp_path, "cpu")
    optimizer = engine.make_optimizer(spec, models)
    generator = torch.Generator().manual_seed(0)
    for epoch in (1, 2):
        engine.train_epoch(spec, models, optimizer, data, generator, {}, epoch)
    assert seen[0] == 0 and seen[-1] == pytest.approx(1.0) and len(seen) == 6
    assert seen == sorted(seen)


# -- models and the paper module -------------------------------------------------------------------

def test_wrn_28_2_has_the_official_size():
    count = sum(p.numel() for p in create_model("wrn28_2", 100).parameters())
    assert count == 1_479_220  # the standard WRN-28-2 on 100 classes (docs/protocols/ktg.md: about 1.5M)
    assert sum(p.numel() for p in create_model("resnet32", 100, shortcut="zeropad").parameters()) == 470_004
    assert sum(p.numel() for p in create_model("resnet110", 100, shortcut="zeropad").parameters()) == 1_733_812
    out = create_model("wrn28_2", 10, 1, 32, width=0.25)(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10) and model_info("wrn28_2")["family"] == "wrn"


def test_paper_module_registers_the_targets_and_searches(ktg):
    registry = ktg.registry
    assert {"ktg_table1", "ktg_table2", "ktg_fig_graphs", "ktg_fig_search"} <= set(registry.targets)
    assert set(registry.searches) == {f"ktg_fashion_mnist_n{n}" for n in ktg.settings["node_counts"]}
    # before any search has finished the optimised graphs have no runs; the baselines do
    assert ktg.runs("optimised:2", "fashion_mnist") == [] and ktg.runs("fixed:2", "fashion_mnist") == []
    assert registry.searches["ktg_fashion_mnist_n2"].result_runs().refs == [] and not registry.searched
    assert ktg.runs("single:resnet32", "fashion_mnist") == ["ktg/fashion_mnist/single/resnet8/s0"]
    assert ktg.compare_nodes() == max(ktg.settings["node_counts"])  # smoke has no 3-node search


@pytest.mark.parametrize("protocol", ["paper", "official"])
def test_the_paper_setting_searches_on_test_and_trains_every_ktg_run_on_the_whole_training_split(protocol):
    """As the source (its search evaluates on the 10,000 images it reports) and the official code: baselines,
    pre-trained nodes, search trials and retrained graphs all train on the 50,000 CIFAR training images."""
    registry, papers = assemble(setting("paper", protocol=protocol))
    specs = [spec for name, spec in registry.runs.items() if name.startswith("ktg/")]
    studies = [search.study for search in registry.searches.values()]
    trial = studies[0].make_spec(Graph.all_through(["resnet32", "resnet110"]), 0, "ktg/probe/trial")
    assert specs and all(spec.data.validation == 0 and spec.data.train_subset is None for spec in [*specs, trial])
    assert studies and all(study.objective_key == "test_acc[node1]" for study in studies)
    assert "judged on node 1's test accuracy" in papers["ktg"].note()


def test_search_split_heldout_holds_the_validation_images_out_of_every_ktg_run():
    registry, papers = assemble(setting("paper", ktg={"search_split": "heldout"}))
    specs = [spec for name, spec in registry.runs.items() if name.startswith("ktg/")]
    studies = [search.study for search in registry.searches.values()]
    trial = studies[0].make_spec(Graph.all_through(["resnet32", "resnet110"]), 0, "ktg/probe/trial")
    assert specs and all(spec.data.validation == 5000 for spec in [*specs, trial])
    assert all(study.objective_key == "val_acc[node1]" for study in studies)
    assert "5000 images held out of the training split (ktg.search_split: heldout" in papers["ktg"].note()


def test_table_2_has_both_dml_rows_of_the_source_beside_our_dml_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs here: the rows and their paper values are what is checked
    registry, _ = assemble(setting("paper"))
    registry.targets["ktg_table2"].render()
    frame = pd.read_csv(tmp_path / "results/paper/tables/ktg_table2.csv")
    dml = frame[(frame.dataset == "cifar100") & frame.model.str.startswith("DML, auxiliary ResNet32, ResNet110")]
    assert sorted(dml.paper) == [72.09, 72.20]
    assert dml.runs.nunique() == 1 and "ktg/cifar100/dml/resnet32-resnet32-resnet110/s0" in dml.runs.iloc[0].split()
    ours = frame[frame.model.str.startswith("Ours")].ours  # before the search has finished
    assert ours.str.startswith("not run yet: its runs are known once the search").all()
    assert not frame.ours.str.startswith("not run:").any()  # every published row of the setting's datasets has runs


def test_search_mode_sets_the_workers_and_the_captions_say_which_ran():
    def assembled(mode: str, workers: int):
        return assemble(setting("config", ktg={"search_mode": mode, "workers": workers}))

    (sequential, sequential_papers), (asynchronous, asynchronous_papers) = assembled("sequential", 1), assembled("asynchronous", 3)
    assert {s.study.workers for s in sequential.searches.values()} == {1}
    assert {s.study.workers for s in asynchronous.searches.values()} == {3}
    captions = [papers["ktg"].note() for papers in (sequential_papers, asynchronous_papers)]
    assert "sequential ASHA (one worker" in captions[0] and "asynchronous ASHA on D = 3 workers" in captions[1]
    with pytest.raises(SpecError, match="ktg.workers: a sequential search runs on one worker, got 2"):
        assembled("sequential", 2)


@pytest.mark.workflow
@pytest.mark.slow
def test_smoke_run_of_the_ktg_targets(smoke_dag):
    wd = smoke_dag
    tables = wd / "results/smoke/tables"
    table1 = pd.read_csv(tables / "ktg_table1.csv")
    ours = table1[table1.dataset == "fashion_mnist"]
    assert list(ours.model) == ["1 node", "2 nodes, Fixed (Through Gate)", "2 nodes, Optimized"]
    assert ours.ours_mean.between(0, 100).all()
    assert table1[table1.dataset == "cifar100"].paper.notna().all()
    table2 = pd.read_csv(tables / "ktg_table2.csv")
    assert table2[table2.dataset == "fashion_mnist"].ours_mean.between(0, 100).all()
    best = json.loads((wd / "results/smoke/search/ktg_fashion_mnist_n2/best.json").read_text())
    assert best["trials"].get("complete", 0) + best["trials"].get("pruned", 0) == 4
    # the best.json found at parse time (planted by smoke_dag, a graph the search cannot choose) gave way to
    # the search's own: the tables read the chosen graph's runs and nothing of the stale graph was trained
    chosen, stale = Graph.from_dict(best["graph"]), Graph.from_dict(STALE_GRAPH)
    assert chosen != stale
    optimised = ours[ours.model == "2 nodes, Optimized"].runs.iloc[0]
    assert f"/optimised/n2/{chosen.identity}/s0" in optimised
    assert not list((wd / "results/smoke/runs").glob(f"ktg/*/optimised/n2/{stale.identity}"))
    assert not list((wd / "results/smoke/runs").glob("ktg/*/dml/*plane2*"))
    for fig in ("ktg_fig_graphs", "ktg_fig_search"):
        assert (wd / f"figures/smoke/{fig}.png").stat().st_size > 10_000
    # a second invocation finds the best graph at parse time and has nothing to do
    assert "Nothing to be done" in snakemake(wd, "ktg", "--configfile", "config/smoke.yaml", "-n").stdout
