"""Settings are validated against the schema before any job runs; errors name the key."""

import os
import re

import pytest

from kdrepro import config as settings
from kdrepro.assemble import build_registry
from kdrepro.graph import SpecError


def test_shipped_settings_are_valid():
    for name in ("config", "smoke", "paper"):
        cfg = settings.load([f"config/{name}.yaml"])
        assert cfg["setting"] == ("default" if name == "config" else name)


def test_defaults_are_filled():
    cfg = settings.load(["config/smoke.yaml"])
    assert cfg["protocol"] == "paper" and cfg["data"]["validation"] == 0 and cfg["takd"]["lambda"] == 0.5


@pytest.mark.parametrize(
    "override,key",
    [
        ({"epochz": 3}, "(top level)"),
        ({"takd": {"epochs": -1}}, "takd.epochs"),
        ({"datasets": ["imagenet"]}, "datasets.0"),
        ({"data": {"train_subsett": 5}}, "data"),
        ({"protocol": "mine"}, "protocol"),
        ({"compile": "fast"}, "compile"),
        ({"takd": {"lambda": 1.5}}, "takd.lambda"),
    ],
)
def test_bad_settings_name_the_key(override, key):
    with pytest.raises(settings.ConfigError, match=re.escape(f"config key {key}")):
        settings.load(["config/smoke.yaml"], override)


def test_missing_config_file():
    with pytest.raises(settings.ConfigError, match="does not exist"):
        settings.load(["config/nope.yaml"])


def test_registry_chains_share_runs():
    registry = build_registry(settings.load(["config/smoke.yaml"]))
    student = "takd/fashion_mnist/plane10-plane4-plane2/s0"
    assert registry.runs[student].dependencies == ["takd/fashion_mnist/plane10-plane4/s0"]
    assert registry.runs["takd/fashion_mnist/plane10-plane4/s0"].dependencies == ["takd/fashion_mnist/plane10/s0"]
    # every TAKD target reads runs that exist, and the teacher plane10 is one run shared by all of them
    assert sum(1 for name in registry.runs if name.startswith("takd/fashion_mnist/plane10/")) == len(registry.config["seeds"])
    for target in registry.targets.values():
        assert set(target.runs) <= set(registry.runs)


def test_protocols_differ_where_the_paper_and_code_disagree():
    paper = build_registry(settings.load(["config/smoke.yaml"]))
    official = build_registry(settings.load(["config/smoke.yaml"], {"protocol": "official"}))
    run = "takd/fashion_mnist/resnet110-resnet8/s0"
    assert paper.runs[run].optimizer.lr == 0.1 and official.runs[run].optimizer.lr == 0.01
    assert paper.runs[run].edges[1].options["class_reduction"] == "sum"
    assert official.runs[run].edges[1].options["class_reduction"] == "mean"
    assert paper.runs["takd/fashion_mnist/plane2/s0"].optimizer.weight_decay == 0.0


def test_unknown_architecture_in_an_experiment_is_named(tmp_path):
    import shutil

    import yaml

    shutil.copytree("config/experiments", tmp_path / "experiments")
    path = tmp_path / "experiments/takd.yaml"
    experiment = yaml.safe_load(path.read_text())
    experiment["tables"]["takd_table2"]["rows"][0]["cells"]["TA=8"] = "plane10-plane3-plane2"
    path.write_text(yaml.safe_dump(experiment))
    with pytest.raises(Exception, match="plane3"):
        build_registry(settings.load(["config/smoke.yaml"]), experiments_dir=tmp_path / "experiments")


def test_undefined_teacher_is_rejected():
    from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec, check_graph

    orphan = RunSpec("s", Data("fashion_mnist"), (Node("teacher", "plane4", frozen_from="takd/none"), Node("student", "plane2")),
                     (Edge(LABELS, "student", "ce"),), epochs=1, seed=0)
    with pytest.raises(SpecError, match="undefined run 'takd/none'"):
        check_graph({"s": orphan})


def test_the_settings_speed_choices_reach_training_and_flags_win(tmp_path, monkeypatch):
    """train/search jobs take precision and torch.compile from the setting unless a flag says otherwise;
    with compile on, compiled graphs are cached per setting so later jobs reuse them."""
    from argparse import Namespace

    from kdrepro.cli import train_options

    cfg = settings.load(["config/smoke.yaml"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    none = Namespace(device=None, precision=None, compile=None)
    assert train_options(none, cfg, "smoke") == {"device": "cpu", "precision": "fp32", "compile_mode": None}
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    fast = cfg | {"precision": "bf16", "compile": "default"}
    assert train_options(none, fast, "smoke") == {"device": "cpu", "precision": "bf16", "compile_mode": "default"}
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "results/smoke/compile-cache")
    flags = Namespace(device=None, precision="fp32", compile="reduce-overhead")
    assert train_options(flags, fast, "smoke") == {"device": "cpu", "precision": "fp32", "compile_mode": "reduce-overhead"}
