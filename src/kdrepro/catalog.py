"""What the registries of architectures, edge losses and gates hold, known without importing them (torch).

Settings, run specs and run names are checked against these facts: a model's family, depth and options
with their types; a loss's options, what it reads and whether it is batch-level; a gate's options. So
listing runs, the status, rendering a table from finished runs and Snakemake's parse never load torch.

Where the facts come from:
* registering a builder, loss or gate records its facts here (kdrepro.models.registry,
  kdrepro.losses.registry): a process that has imported the registries (a training job, a script that
  registers its own loss) knows exactly what it registered;
* any other process reads the catalogue of the package's own registries: a JSON file under the user cache,
  keyed by the sha256 of the registries' source files (the code version), written once per code version
  by `python -m kdrepro.catalog_build` in a child process, so that this process still never imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdrepro.io import save_json
from kdrepro.paths import USER_CACHE
from kdrepro.typecheck import expected, fits

PACKAGE = Path(__file__).resolve().parent
SOURCES = ("models", "losses")  # the packages whose registrations the catalogue describes
BUILDING = "KDREPRO_BUILDING_CATALOG"  # set in the child process that builds the catalogue
SIMPLE_TYPES = {"float": float, "int": int, "str": str, "bool": bool, "None": type(None), "Any": Any}


class ModelError(ValueError):
    """An unknown architecture or option; the message lists what is available."""


class LossError(ValueError):
    """An edge names an unknown loss or gate, or passes an option it does not take."""


@dataclass(frozen=True)
class ModelFacts:
    family: str
    depth: int  # the size axis of the papers' figures
    options: dict[str, str] = field(default_factory=dict)  # option -> its annotation, as written (annotation_text)


@dataclass(frozen=True)
class EdgeFacts:
    """A loss's or gate's options; for a loss also what it reads (kdrepro.losses.registry.LossInfo)."""

    options: tuple[str, ...]
    inputs: str = "logits"
    batch: bool = False


REGISTERED: dict[str, dict[str, Any]] = {"models": {}, "losses": {}, "gates": {}}  # recorded in this process
KINDS = {"model": "models", "loss": "losses", "gate": "gates"}


def record(kind: str, name: str, facts: ModelFacts | EdgeFacts) -> None:
    """What registering `name` adds; kdrepro.models.registry and kdrepro.losses.registry call it."""
    REGISTERED[KINDS[kind]][name] = facts


def annotation_text(hint: Any) -> str:
    """An option's type as the catalogue stores it: "float", "str | None", "float | list[float] | None"."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(annotation_text(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"list[{annotation_text(typing.get_args(hint)[0])}]"
    if hint is type(None):
        return "None"
    return "Any" if hint is Any else hint.__name__


def annotation(text: str) -> Any:
    """annotation_text read back into the type that typecheck.fits checks."""
    parts = []
    for part in text.split(" | "):
        inner = part.removeprefix("list[").removesuffix("]")
        parts.append(list[SIMPLE_TYPES[inner]] if inner != part else SIMPLE_TYPES[part])
    return typing.Union[tuple(parts)] if len(parts) > 1 else parts[0]


def code_version(package: Path = PACKAGE, folders: tuple[str, ...] = SOURCES) -> str:
    """sha256 of the package's source files under `folders` (by default those whose registrations the catalogue
    holds; ("",) for all of them)."""
    digest = hashlib.sha256()
    for path in sorted(p for folder in folders for p in (package / folder).rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_catalogue() -> dict[str, dict[str, Any]]:
    """The registries' facts, from a child process that imports them (this one does not)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")]),
               **{BUILDING: "1"})
    done = subprocess.run([sys.executable, "-m", "kdrepro.catalog_build"], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"building the catalogue of models and losses failed:\n{done.stderr}")
    return json.loads(done.stdout)


@functools.lru_cache(maxsize=None)
def catalogue(cache: Path = USER_CACHE) -> dict[str, dict[str, Any]]:
    """The package's registered facts, read from the cache of this code version (built on a miss)."""
    if os.environ.get(BUILDING):  # the child that builds it: only what it registers itself
        return {table: {} for table in KINDS.values()}
    path = cache / f"catalog-{code_version()[:16]}.json"
    if path.exists():
        raw = json.loads(path.read_text())
    else:
        raw = build_catalogue()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(raw, path)
    return {"models": {n: ModelFacts(**f) for n, f in raw["models"].items()},
            "losses": {n: EdgeFacts(**(f | {"options": tuple(f["options"])})) for n, f in raw["losses"].items()},
            "gates": {n: EdgeFacts(**(f | {"options": tuple(f["options"])})) for n, f in raw["gates"].items()}}


def as_json(registered: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {kind: {name: asdict(facts) for name, facts in sorted(table.items())} for kind, table in registered.items()}


def facts_of(kind: str) -> dict[str, Any]:
    """Everything known of a kind: the package's catalogue, and over it what this process registered."""
    table = KINDS[kind]
    return catalogue()[table] | REGISTERED[table]


def registered_or_catalogued(kind: str, name: str) -> Any | None:
    """One entry's facts; a process that registered it (a training job) does not read the catalogue."""
    return REGISTERED[KINDS[kind]].get(name) or facts_of(kind).get(name)


# -- models ----------------------------------------------------------------------------------------

def model_facts(name: str) -> ModelFacts:
    facts = registered_or_catalogued("model", name)
    if facts is None:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return facts


def list_models() -> list[str]:
    models = facts_of("model")
    return sorted(models, key=lambda n: (models[n].family, models[n].depth, n))


def family_models(family: str) -> list[str]:
    """The registered models of a family (settings give model options per family); [] for an unknown one."""
    return [name for name in list_models() if facts_of("model")[name].family == family]


def list_families() -> list[str]:
    return sorted({f.family for f in facts_of("model").values()})


def model_info(name: str) -> dict[str, Any]:
    facts = model_facts(name)
    return {"family": facts.family, "depth": facts.depth, "options": list(facts.options)}


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Every option is one the builder takes, of the type it declares; a width is positive."""
    declared = model_facts(name).options
    unknown = sorted(set(options) - set(declared))
    if unknown:
        raise ModelError(f"model {name!r} has no option {unknown}; its options are {list(declared)}")
    for option, value in options.items():
        hint = annotation(declared[option])
        if not fits(value, hint):
            raise ModelError(f"model {name!r}: option {option} must be {expected(hint)}, got {value!r}")
    if "width" in options and not options["width"] > 0:
        raise ModelError(f"model {name!r}: option width scales every layer and must be a positive number, got {options['width']!r}")


# -- edge losses and gates -------------------------------------------------------------------------

def edge_facts(kind: str, name: str) -> EdgeFacts:
    facts = registered_or_catalogued(kind, name)
    if facts is None:
        raise LossError(f"unknown {kind} {name!r}; known: {', '.join(sorted(facts_of(kind)))}")
    return facts


def check_edge_options(kind: str, name: str, options: dict) -> None:
    """Fail before training when an edge names an unknown loss or gate ("loss", "gate") or option."""
    accepted = edge_facts(kind, name).options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LossError(f"{kind} {name!r} takes no option {unknown[0]!r}; it takes: {', '.join(accepted) or 'none'}")
