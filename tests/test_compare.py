"""The method comparison: any methods on any teacher/student pairs, methods of the user's own (with losses from
the user's module), on the user's own images; teachers, scratch and KD runs shared with TAKD by name."""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, copy_workflow, setting, snakemake
from PIL import Image

from kdrepro.assemble import assemble
from kdrepro.config import ConfigError
from kdrepro.graph import LABELS, SpecError
from kdrepro.losses import GATES

PAIR = ["resnet110", "resnet20"]


def test_teacher_scratch_and_kd_are_takds_runs_and_each_method_is_its_edges():
    registry, papers = assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["at", "lsr", "tfkd_self", "takd"]}))
    table = registry.targets["compare_table"]
    compare = papers["compare"]
    assert compare.runs("teacher:resnet110>resnet20", "fashion_mnist") == ["takd/fashion_mnist/resnet110/s0"]
    assert compare.runs("scratch:resnet110>resnet20", "fashion_mnist") == ["takd/fashion_mnist/resnet20/s0"]
    assert compare.runs("kd:resnet110>resnet20", "fashion_mnist") == ["takd/fashion_mnist/resnet110-resnet20/s0"]
    assert compare.runs("takd:resnet110>resnet20", "fashion_mnist") == ["takd/fashion_mnist/resnet110-resnet56-resnet20/s0"]
    at = registry.runs["compare/fashion_mnist/resnet110-resnet20/at/s0"]
    assert [(e.source, e.loss, e.weight) for e in at.edges] == [(LABELS, "ce", 1.0), ("teacher", "at", 1000)]
    assert at.nodes[0].frozen_from == "takd/fashion_mnist/resnet110/s0"
    # the recipe is TAKD's scratch run's: only the name, nodes and edges differ
    scratch = registry.runs["takd/fashion_mnist/resnet20/s0"]
    assert (at.optimizer, at.schedule, at.epochs, at.batch_size, at.data) == (scratch.optimizer, scratch.schedule, scratch.epochs,
                                                                              scratch.batch_size, scratch.data)
    assert [n.name for n in registry.runs["compare/fashion_mnist/resnet110-resnet20/lsr/s0"].nodes] == ["student"]
    own = registry.runs["compare/fashion_mnist/resnet110-resnet20/tfkd_self/s0"].nodes[0]
    assert (own.arch, own.frozen_from) == ("resnet20", "takd/fashion_mnist/resnet20/s0")
    assert set(table.runs) >= {"compare/fashion_mnist/resnet110-resnet20/at/s0", "takd/fashion_mnist/resnet110-resnet20/s0"}
    assert "compare_fig" in registry.targets
    claims = [c.statement for c in compare.claims()]
    assert claims[0] == "at beats kd (resnet110 → resnet20, fashion_mnist)" and len(claims) == 4


def test_dml_trains_a_peer_with_the_student_and_a_ktg_graph_is_given_as_gated_edges():
    ktg_like = {"description": "a KTG graph: the teacher's KD gated linearly", "edges": [
        {"source": "labels", "loss": "ce"},
        {"source": "teacher", "loss": "kd", "gate": "linear", "options": {"temperature": 1.0}}]}
    registry, _ = assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["dml", "cc_mmd", "graph"],
                                                     "define": {"graph": ktg_like}}))
    dml = registry.runs["compare/fashion_mnist/resnet110-resnet20/dml/s0"]
    assert [(n.name, n.arch, n.trainable) for n in dml.nodes] == [("teacher", "resnet20", True), ("student", "resnet20", True)]
    assert {(e.source, e.target, e.loss) for e in dml.edges} == {
        (LABELS, "student", "ce"), ("teacher", "student", "kd"), (LABELS, "teacher", "ce"), ("student", "teacher", "kd")}
    assert not dml.dependencies  # nothing pre-trained: both networks start from scratch
    assert [e.options["kernel"] for e in registry.runs["compare/fashion_mnist/resnet110-resnet20/cc_mmd/s0"].edges if e.loss == "cc"] == ["mmd"]
    assert [e.gate for e in registry.runs["compare/fashion_mnist/resnet110-resnet20/graph/s0"].edges] == ["through", "linear"]
    # FitNets' two stages: the hint run, whose layers up to the middle stage start the KD run's student
    registry, _ = assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["fitnets"]}))
    hint = registry.runs["compare/fashion_mnist/resnet110-resnet20/fitnets-stage1/s0"]
    assert [(e.source, e.loss, e.weight) for e in hint.edges] == [("teacher", "hint", 100)]
    student = registry.runs["compare/fashion_mnist/resnet110-resnet20/fitnets/s0"].node("student")
    assert (student.init_from, student.init_layers) == (hint.name, ("conv1", "bn1", "layer1", "layer2"))
    with pytest.raises(SpecError, match="only a peer teacher"):
        assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["bad"], "define": {"bad": {
            "description": "x", "edges": [{"source": "student", "target": "teacher", "loss": "kd"}]}}}))


def test_dkd_warms_up_as_mdistiller_and_tfkd_takes_its_resnet_students_official_values():
    registry, _ = assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["dkd", "tfkd_reg", "tfkd_self"]}))
    runs = registry.runs
    dkd = next(e for e in runs["compare/fashion_mnist/resnet110-resnet20/dkd/s0"].edges if e.loss == "dkd")
    assert dkd.options == {"temperature": 4.0, "alpha": 1.0, "beta": 2.0}  # mdistiller's res110_res32 / res56_res20
    labels = torch.zeros(2, dtype=torch.long)
    warm_up = [GATES[dkd.gate](None, labels, progress, **dkd.gate_options)[0].item() for progress in (0.0, 10 / 240, 20 / 240, 0.5)]
    assert warm_up == pytest.approx([0.0, 0.5, 1.0, 1.0], abs=1e-3)  # min(epoch / 20, 1) of 240 epochs
    # the edges carry tfkd.yaml's ResNet18 values: the labels at 1 - alpha, the soft term at alpha x multiplier
    official = registry.experiments["tfkd"]["hyper"]
    for method, loss in (("reg", "tfkd_reg"), ("self", "kd")):
        h = official[method]["resnet18"]
        edges = {e.loss: e for e in runs[f"compare/fashion_mnist/resnet110-resnet20/tfkd_{method}/s0"].edges}
        assert edges["ce"].weight == pytest.approx(1 - h["alpha"])
        assert edges[loss].weight == pytest.approx(h["alpha"] * h["multiplier"])
        assert edges[loss].options["temperature"] == h["temperature"]


def test_no_pairs_no_targets_and_bad_methods_are_refused_with_the_key():
    registry, _ = assemble(setting("smoke"))
    assert not any(name.startswith("compare") for name in registry.targets)
    with pytest.raises(SpecError, match="compare.methods: unknown method 'atx'"):
        assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["atx"]}))
    with pytest.raises(ConfigError, match="compare.define.mine"):
        assemble(setting("smoke", compare={"pairs": [PAIR], "methods": ["mine"], "define": {"mine": {"description": "x", "edge": []}}}))


def test_a_plugin_that_cannot_be_imported_is_named_and_a_setting_builds_only_its_experiments():
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_module_here'"):
        setting("smoke", plugins=["no_such_module_here"])
    # CCKD's sampler counts would not divide this batch: a setting without CCKD is not checked for them
    with pytest.raises(ConfigError, match="cckd.cur.k"):
        setting("smoke", takd={"batch_size": 24})
    registry, papers = assemble(setting("smoke", takd={"batch_size": 24}, experiments=["takd", "compare"]))
    assert list(papers) == ["takd", "compare"] and not any(run.startswith("cckd/") for run in registry.runs)


def fabricated_images(root: Path, classes: int = 3, train: int = 24, test: int = 12) -> None:
    """Noise with a bright vertical band whose place is the class: learnable in one epoch."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
                image[:, 5 * label:5 * label + 5] += 150
                Image.fromarray(image).save(folder / f"{i}.png")


def readme_files() -> dict[str, str]:
    """The files the README's comparison section tells a user to write: each code block after a
    `<!-- doc-test: NAME -->` line."""
    found = re.findall(r"<!-- doc-test: (\S+) -->\n```\w*\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return dict(found)


def test_the_readme_gives_both_files():
    assert set(readme_files()) == {"mylosses.py", "my.yaml"}


@pytest.mark.slow
def test_a_users_loss_and_images_reach_the_compare_table_and_figure(tmp_path, monkeypatch):
    """The two files of the README's comparison section, written and run as it says, on fabricated images."""
    work = copy_workflow(tmp_path / "work")
    fabricated_images(work / "my_images")
    for name, text in readme_files().items():
        (tmp_path if name.endswith(".py") else work).joinpath(name).write_text(text)
    # the user's module is importable by the workflow and its jobs (installed, or on PYTHONPATH)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    snakemake(work, "compare_table", "compare_fig", "--configfile", "my.yaml", "--cores", "2")
    table = pd.read_csv(work / "results/mine/tables/compare_table.csv")
    assert list(table["method"]) == ["teacher", "scratch", "kd", "mine"]
    assert table["n_seeds"].tolist() == [1, 1, 1, 1] and table["ours_mean"].notna().all()
    assert (work / "figures/mine/compare_fig.png").stat().st_size > 0
