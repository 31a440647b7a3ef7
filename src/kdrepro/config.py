"""Settings: load YAML files, merge them, validate against the workflow's schema, fill defaults, and
check what the schema cannot: sizes against the datasets, sampler counts, model options."""

from __future__ import annotations

import copy
import functools
import importlib
from pathlib import Path
from typing import Any, Iterable

import yaml

from kdrepro.data import split_problems
from kdrepro.data.folders import known_datasets, setting_folders, setting_meta
from kdrepro.catalog import ModelError, check_model_options, family_models, list_families
from kdrepro.paths import SCHEMA
from kdrepro.teachers import teacher_problems

PAPER_BLOCKS = ("takd", "tfkd", "cckd", "ktg", "fitnets")  # the settings blocks of the papers
MODEL_OPTION_BLOCKS = ("takd", "tfkd", "ktg")  # paper blocks with `model_options`: family -> builder options


class ConfigError(ValueError):
    """A setting is invalid; the message names the offending key."""


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update, as Snakemake merges several --configfile."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@functools.cache
def defaults_validator() -> type:
    """Draft 2020-12's validator class, extended to fill `default:` values in as snakemake.utils.validate does
    (made once per process)."""
    import jsonschema  # imported here: training processes never validate and skip its import time

    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def read_schema(schema_path: Path) -> dict[str, Any]:
    """A schema file, parsed (shared between callers, which must not change it)."""
    return parsed_schema(schema_path, schema_path.read_text())


@functools.lru_cache(maxsize=8)
def parsed_schema(schema_path: Path, text: str) -> dict[str, Any]:
    """A schema's content, parsed once per process and content: every Snakemake parse checks the setting and the
    six experiment files, and the comparison each method a setting defines, against two schema files, which took
    5-8 ms to parse each time (issue 18). An edited file is parsed again."""
    return parse_yaml(text, schema_path)


def conform(data: Any, schema_path: Path, where: str = "config", definition: str | None = None) -> Any:
    """`data` checked against the schema (or its `$defs` entry `definition`), defaults filled in; the first
    error is a ConfigError naming `where` and the dotted key."""
    schema = read_schema(schema_path)
    if definition is not None:
        if definition not in schema.get("$defs", {}):
            raise ConfigError(f"{schema_path} has no entry for {where}: add one under $defs.{definition}")
        schema = {**schema, "$ref": f"#/$defs/{definition}"}
    data = copy.deepcopy(data)
    validator = defaults_validator()(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{where} key {key}: {err.message}")
    return data


def check_key(key: str, value: Any, schema_path: Path = SCHEMA) -> None:
    """A value for the top-level setting key `key` (given by a command-line flag that stands for it)."""
    from jsonschema import Draft202012Validator

    error = next(iter(Draft202012Validator(read_schema(schema_path)["properties"][key]).iter_errors(value)), None)
    if error is not None:
        raise ConfigError(f"{error.message}, as the setting key {key} requires")


def validate(config: dict[str, Any], schema_path: Path = SCHEMA) -> dict[str, Any]:
    config = conform(config, schema_path)
    import_plugins(config.get("plugins", []))
    check_consistency(config)
    return config


def import_plugins(modules: Iterable[str]) -> None:
    """The setting's `plugins`, imported so that their @register_loss losses exist before any spec names them."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {module!r} ({err}); it must be importable by the Python that runs "
                              "kdrepro and its jobs (pip install your package into that environment, or set PYTHONPATH)") from None


def check_consistency(config: dict[str, Any]) -> None:
    """The cross-field checks of a schema-valid setting, each error naming its key: each dataset known (built in,
    or one of the setting's image_folders, whose roots must hold images), each paper's datasets among the setting's, subsets, validation and pad_to against each dataset's known sizes, CCKD's sampler counts
    against its batch and the classes (for the experiments the setting builds), model options only for known
    families and of the builders' types, external teachers' names, networks, datasets and files (kdrepro.teachers)."""
    known = known_datasets(config)
    for i, name in enumerate(config["datasets"]):
        if name not in known:
            raise ConfigError(f"config key datasets.{i}: unknown dataset {name!r}; the known datasets: {', '.join(known)} "
                              "(an image folder of your own is named under image_folders)")
    for paper in PAPER_BLOCKS:
        for i, name in enumerate(config[paper]["datasets"] or []):
            if name not in config["datasets"]:
                raise ConfigError(f"config key {paper}.datasets.{i}: {name} is not one of the setting's datasets "
                                  f"({', '.join(config['datasets'])})")
    folders = setting_folders(config)
    for name in config["datasets"]:
        if name in folders and (problem := folders[name].problem) is not None:
            raise ConfigError(f"config key {folders[name].key}: image folder {name!r}: {problem}")
    d = config["data"]
    metas = [m for m in (setting_meta(name, config) for name in config["datasets"]) if m is not None]
    for meta in metas:
        for key, problem in split_problems(meta, train_subset=d["train_subset"], test_subset=d["test_subset"],
                                           validation=d["validation"], pad_to=d["pad_to"]).items():
            raise ConfigError(f"config key data.{key}: {problem}")
        for paper in {"ktg", "fitnets"} & set(config["experiments"]):  # their own training subsets
            for key, problem in split_problems(meta, train_subset=config[paper]["train_subset"]).items():
                raise ConfigError(f"config key {paper}.{key}: {problem}")
        search = config["takd"]["hyper_search"]
        if search:  # the trials' held-out images come out of TAKD's training images (data.train_subset)
            for key, problem in split_problems(meta, train_subset=d["train_subset"], validation=search["validation"]).items():
                raise ConfigError(f"config key takd.hyper_search.{key}: {problem}")
    for key, problem in teacher_problems(config).items():
        raise ConfigError(f"config key {key}: {problem}")
    check_hyper_search(config["takd"]["hyper_search"])
    if "cckd" in config["experiments"]:
        check_samplers(config, max((m.num_classes for m in metas), default=None))
    for paper in MODEL_OPTION_BLOCKS:
        for family, options in config[paper]["model_options"].items():
            key = f"config key {paper}.model_options.{family}"
            if not family_models(family):
                raise ConfigError(f"{key}: no model family {family!r}; the families are {', '.join(list_families())}")
            for option, value in options.items():
                for model in family_models(family):
                    try:
                        check_model_options(model, {option: value})
                    except ModelError as err:
                        raise ConfigError(f"{key}.{option}: {err}") from None


def check_hyper_search(search: dict[str, Any] | None) -> None:
    """TAKD's lambda range runs upwards, and its grid step fits it a whole number of times."""
    if not search:
        return
    low, high = search["lambda"]
    if low > high:
        raise ConfigError(f"config key takd.hyper_search.lambda: [{low}, {high}] is not a range (low above high)")
    step = search["lambda_step"]
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise ConfigError(f"config key takd.hyper_search.lambda_step: {step} does not divide [{low}, {high}] into whole steps")


def check_samplers(config: dict[str, Any], classes: int | None) -> None:
    """CCKD's CUR and SUR counts: each k divides the batch (CCKD's runs train with takd.batch_size), and the
    groups a batch holds (batch / k under the paper's reading, k under the other) are no more than there
    are classes, or superclasses (`classes`: the most of any of the setting's datasets; None: unknown)."""
    cckd, batch = config["cckd"], config["takd"]["batch_size"]
    cur, sur = cckd["cur"], cckd["sur"]
    checks = [(f"cckd.cur.k.{i}", k, cur["reading"] == "samples_per_class", "classes", classes) for i, k in enumerate(cur["k"])]
    checks.append(("cckd.sur.k", sur["k"], sur["reading"] == "samples_per_superclass", "superclasses", sur["superclasses"]))
    for key, k, per_group, groups, available in checks:
        if batch % k:
            raise ConfigError(f"config key {key}: {k} does not divide the batch of {batch} "
                              "(takd.batch_size, which CCKD's runs train with)")
        wanted = batch // k if per_group else k
        if available is not None and wanted > available:
            raise ConfigError(f"config key {key}: a batch of {batch} would hold {wanted} {groups}, but there are {available}")
    if classes is not None and sur["superclasses"] > classes:
        raise ConfigError(f"config key cckd.sur.superclasses: {sur['superclasses']} superclasses, but the setting's "
                          f"datasets have at most {classes} classes")


# libyaml's parser where PyYAML was built with it: the same safe loading, about ten times faster (every
# command and every Snakemake parse reads the experiment files and the schemas)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """A YAML (or JSON) file; a syntax error is a ConfigError naming the file, line and column."""
    return parse_yaml(path.read_text(), path)


def parse_yaml(text: str, path: Path) -> Any:
    """The YAML text of the file `path`, which a syntax error names, with the line and column."""
    try:
        return yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = " ".join(p for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p) or str(err)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None


def load(paths: Iterable[Path | str], overrides: dict[str, Any] | None = None, schema_path: Path = SCHEMA) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        content = read_yaml(path)
        if content is not None and not isinstance(content, dict):
            raise ConfigError(f"config file {path}: its top level must be a mapping of setting keys (setting:, "
                              f"datasets:, ...), not a {type(content).__name__}")
        config = merge(config, content or {})
    return validate(merge(config, overrides or {}), schema_path)
