"""Settings are validated against the schema before any job runs; errors name the key."""

import os
import re

import pytest

from conftest import setting
from kdrepro import config as settings


def test_shipped_settings_are_valid():
    for name in ("config", "smoke", "paper", "fmnist-full", "cpu"):
        assert setting(name)["setting"] == ("default" if name == "config" else name)


def test_defaults_are_filled():
    cfg = setting("smoke")
    assert cfg["protocol"] == "paper" and cfg["data"]["validation"] == 0 and cfg["takd"]["batch_size"] == 128
    assert "lambda" not in cfg["takd"]  # a loss hyper-parameter: config/experiments/takd.yaml's unless a setting sets it


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
        setting("smoke", **override)


def test_missing_config_file():
    with pytest.raises(settings.ConfigError, match="does not exist"):
        settings.load(["config/nope.yaml"])


def test_the_settings_speed_choices_reach_training_and_flags_win(tmp_path, monkeypatch):
    """train/search jobs take precision and torch.compile from the setting unless a flag says otherwise;
    with compile on, compiled graphs are cached per setting so later jobs reuse them."""
    from argparse import Namespace

    from kdrepro.cli import train_options

    cfg = setting("smoke")
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


def test_a_schema_is_parsed_once_per_content_and_a_changed_one_is_read_again(tmp_path, monkeypatch):
    """conform() keeps each schema file parsed (a Snakemake parse checks seven files against
    two schemas), keyed by the file's content: an edited schema is what the next check reads."""
    schema = tmp_path / "schema.yaml"
    schema.write_text("type: object\nproperties:\n  epochs: {type: integer, default: 3}\n")
    parsed = []
    real_parse = settings.parse_yaml
    monkeypatch.setattr(settings, "parse_yaml", lambda text, path: parsed.append(path) or real_parse(text, path))
    assert settings.conform({}, schema) == {"epochs": 3}
    assert settings.conform({"epochs": 5}, schema) == {"epochs": 5}
    assert parsed == [schema]
    schema.write_text("type: object\nproperties:\n  epochs: {type: integer, minimum: 10, default: 12}\n")
    assert settings.conform({}, schema) == {"epochs": 12}
    with pytest.raises(settings.ConfigError, match="config key epochs: 5 is less than the minimum of 10"):
        settings.conform({"epochs": 5}, schema)
    assert parsed == [schema, schema]
