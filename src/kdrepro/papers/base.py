"""What every paper shares. A paper module subclasses Paper with only what is its own: its run-template
grammar and run specs (`seed_run`), its claims, its figure kinds, and where its tables differ from the
declared form.

A run template is a cell of a table or a chain of a figure (a string such as "kd:resnet18>mobilenetv2",
or whatever form the paper's experiment file gives). Looking one up (`runs`, `lookup`) never changes the
registry; `build` registers the runs its targets read, through `register`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from kdrepro.experiments import Registry, Runs, Target
from kdrepro.graph import Data, RunSpec, SpecError
from kdrepro.catalog import list_models, model_info
from kdrepro.report.claims import Claim, PaperEffect
from kdrepro.report.figures import figure_target
from kdrepro.report.results import Results, Stat
from kdrepro.report.tables import table_target


LABEL_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # a word of a row label that may name a network ("WRN-28-2")


def network_key(word: str) -> str:
    """A network's name as labels and the registry both spell it: "WRN-28-2" and "wrn28_2" -> "wrn282"."""
    return re.sub(r"[^a-z0-9]", "", word.lower())


class Paper:
    name: ClassVar[str]  # its settings block, its experiment file (config/experiments/<name>.yaml), its runs' prefix

    def __init__(self, registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]):
        self.registry, self.experiment, self.paper_values = registry, experiment, paper_values
        # the setting as this paper runs it: its `datasets` are the paper block's own (Registry.datasets)
        self.config = {**registry.config, "datasets": registry.datasets(self.name)}
        self.settings = self.config[self.name]
        protocols = experiment.get("protocols")
        self.protocol = protocols[self.config["protocol"]] if protocols else {}
        self.seeds = registry.seeds(self.name)
        self.substitute: dict[str, str] = self.settings.get("substitute", {})
        self.check_substitutions()
        self.results = Results(registry, self.name)

    # -- the setting ------------------------------------------------------------------------------
    def hyper(self, key: str) -> Any:
        """A loss hyper-parameter: the setting's value where it sets one, else the experiment file's."""
        return self.settings[key] if key in self.settings else self.experiment[key]

    def trained(self, arch: str) -> str:
        """The network trained in place of the paper's `arch` (the setting's `substitute`; itself by default)."""
        return self.substitute.get(arch, arch)

    def check_substitutions(self) -> None:
        """Both sides of each substitution are known networks, and nothing trained in place of another is itself replaced."""
        known = list_models()
        for paper_arch, arch in self.substitute.items():
            unknown = [a for a in (paper_arch, arch) if a not in known]
            if unknown:
                raise SpecError(f"{self.name}.substitute: {paper_arch} -> {arch}: unknown model {unknown[0]!r}; "
                                f"known: {', '.join(known)}")
            if arch in self.substitute:
                raise SpecError(f"{self.name}.substitute: {paper_arch} -> {arch}, but {arch} is itself replaced by "
                                f"{self.substitute[arch]}")

    def substitution_note(self) -> str:
        """The caption sentence naming what the setting trains in place of the paper's networks."""
        parts = [f"{a} → {b}" for a, b in self.substitute.items()]
        return f"Substitutions in this setting (paper network → network trained): {', '.join(parts)}." if parts else ""

    def row_label(self, label: str) -> str:
        """A table row's label naming the networks trained where the setting substitutes one the label names, the
        paper's label beside it: "ResNet18 (paper: GoogLeNet)"; the label itself where nothing it names is substituted.
        A trained network is written as the paper's labels write it where they name it, else by its registry name."""
        if not self.substitute:
            return label
        spelled = {network_key(m.group()): m.group() for row in self.declared_rows() for m in LABEL_WORD.finditer(row["model"])}
        trained = {network_key(paper_arch): spelled.get(network_key(arch), arch) for paper_arch, arch in self.substitute.items()}
        relabelled = LABEL_WORD.sub(lambda m: trained.get(network_key(m.group()), m.group()), label)
        return label if relabelled == label else f"{relabelled} (paper: {label})"

    def declared_rows(self) -> list[dict[str, Any]]:
        """The rows of the experiment file's tables that carry a label (`model`)."""
        return [row for decl in self.experiment.get("tables", {}).values() for row in decl.get("rows", []) if "model" in row]

    def options(self, arch: str) -> dict[str, Any]:
        """Constructor options of `arch`: the setting's `model_options` of its family."""
        return dict(self.settings.get("model_options", {}).get(model_info(arch)["family"], {}))

    def data(self, dataset: str, **overrides: Any) -> Data:
        """What this paper's runs read of `dataset`: the setting's data block, with the paper's overrides."""
        block = self.config["data"]
        setting = {"root": block["roots"].get(dataset), "download": block["download"], "train_subset": block["train_subset"],
                   "test_subset": block["test_subset"], "validation": block["validation"], "pad_to": block["pad_to"]}
        # an image folder of the setting: its content and channels instead of its root
        return Data(dataset=dataset, **(setting | self.registry.data_fields(dataset) | overrides))

    def augmentation(self, recipe: dict[str, Any]) -> dict[str, Any]:
        """The recipe's augmentation, unless the setting turns it off (`augment: false`)."""
        return dict(recipe["augmentation"]) if self.settings["augment"] else {}

    # -- run templates ----------------------------------------------------------------------------
    def seed_run(self, template: Any, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]] | None:
        """The run reference behind `template` for one seed, and the specs of that run and of every run
        it needs, the needed ones first; None while it cannot be known (a search has not finished)."""
        raise NotImplementedError

    def seeds_of(self, template: Any, dataset: str) -> list[int]:
        """The seeds a template is run with: the paper's (a paper may give some templates more)."""
        return self.seeds

    def lookup(self, template: Any, dataset: str) -> Runs:
        found = [self.seed_run(template, dataset, seed) for seed in self.seeds_of(template, dataset)]
        if None in found:
            return Runs([], {})
        return Runs([ref for ref, _ in found], {name: spec for _, specs in found for name, spec in specs.items()})

    def runs(self, template: Any, dataset: str) -> list[str]:
        """The run references (one per seed) behind a template; registers nothing."""
        return self.lookup(template, dataset).refs

    def register(self, template: Any, dataset: str) -> list[str]:
        """The same references, with their runs and the runs those need added to the registry (build time)."""
        found = self.lookup(template, dataset)
        self.registry.add_runs(found.specs)
        return found.refs

    def stat(self, template: Any, dataset: str) -> Stat:
        """A template's runs summarised over the seeds (for claims)."""
        return self.results.stat(self.runs(template, dataset))

    # -- targets ----------------------------------------------------------------------------------
    def build(self) -> None:
        """Registers the declared tables and figures, and with them every run they read."""
        for name, decl in self.experiment.get("tables", {}).items():
            self.registry.targets[name] = self.table(name, decl)
        for name, decl in self.experiment.get("figures", {}).items():
            self.registry.targets[name] = self.figure(name, decl)

    def table(self, name: str, decl: dict[str, Any]) -> Target:
        rows = [{**row, "label": self.row_label(row["model"])} for row in decl["rows"]]
        return table_target(self.registry, name, {**decl, "rows": rows}, self.paper_values, self)

    def figure(self, name: str, decl: dict[str, Any]) -> Target:
        return figure_target(self.registry, name, decl, self)

    def claims(self) -> list[Claim]:
        """The paper's qualitative claims, each judged on every dataset of the setting."""
        raise NotImplementedError

    def published_gap(self, table: str, better: tuple[str, str], other: tuple[str, str]) -> PaperEffect | None:
        """The paper's own `better` minus `other` in one of its tables (config/paper_values/<paper>.yaml, keyed
        "row/dataset" -> column -> [value, tag]), each side a (row, column), on the first of the paper's datasets
        that gives both; None where the paper gives no such pair."""
        rows = self.paper_values.get(table, {})
        for key, cells in rows.items():
            row, _, dataset = key.rpartition("/")
            if row != better[0]:
                continue
            mine, theirs = cells.get(better[1]), rows.get(f"{other[0]}/{dataset}", {}).get(other[1])
            if mine and theirs and mine[0] is not None and theirs[0] is not None:
                return PaperEffect(round(mine[0] - theirs[0], 4), dataset)
        return None

    def claims_inputs(self) -> list[str]:
        """Files the claims read besides the runs' metrics (another target's outputs)."""
        return []
