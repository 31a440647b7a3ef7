"""Settings: load YAML files, merge them, validate against the workflow's schema, fill defaults."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

from kdrepro.paths import SCHEMA


class ConfigError(ValueError):
    """A setting is invalid; the message names the offending key."""


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update, as Snakemake merges several --configfile."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _with_defaults(validator_class):
    """A validator that also fills `default:` values in, as snakemake.utils.validate does."""
    import jsonschema  # imported here: training processes never validate and skip its import time

    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate(config: dict[str, Any], schema_path: Path = SCHEMA) -> dict[str, Any]:
    schema = yaml.safe_load(schema_path.read_text())
    config = copy.deepcopy(config)
    from jsonschema import Draft202012Validator

    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"config key {key}: {err.message}")
    return config


def load(paths: Iterable[Path | str], overrides: dict[str, Any] | None = None, schema_path: Path = SCHEMA) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        config = merge(config, yaml.safe_load(path.read_text()) or {})
    return validate(merge(config, overrides or {}), schema_path)
