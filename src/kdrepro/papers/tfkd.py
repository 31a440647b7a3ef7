"""Tf-KD (Yuan et al., CVPR 2020): Re-KD, De-KD, Tf-KD_self, Tf-KD_reg and label smoothing.

Every cell of the tables is a run template (see config/experiments/tfkd.yaml): "scratch:A",
"kd:T>S", "self:A", "dekd:T@E>S", "reg:A", "lsr:A", "snapshot:T@E". A template names the paper's
architectures; the setting may train a smaller member in place of one (tfkd.substitute), and runs
are named after what is trained, so two cells that end up training the same thing share one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kdrepro.experiments import SNAPSHOT, Registry, Results, Stat, check_substitutions, paper_seeds, substitution_note
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.models import model_info
from kdrepro.report.claims import Claim, compare
from kdrepro.report.figures import figure_target
from kdrepro.report.tables import table_target

PAPER = "tfkd"
METHODS = ("scratch", "kd", "self", "dekd", "reg", "lsr", "snapshot")
TEMPLATE = re.compile(r"^(?P<method>[a-z]+):(?:(?P<teacher>[a-z0-9_]+)(?:@(?P<epoch>\d+))?>)?(?P<arch>[a-z0-9_]+)(?:@(?P<snap>\d+))?$")
COMPARABLE_POINTS = 0.5  # "Tf-KD_reg is comparable to normal KD": at most this far below it (or one seed std)


@dataclass(frozen=True)
class Cell:
    method: str
    arch: str  # the network trained (or, for snapshot, the poorly trained teacher)
    teacher: str | None = None
    epoch: int | None = None  # reference epoch of a poorly trained teacher

    @classmethod
    def parse(cls, template: str) -> "Cell":
        match = TEMPLATE.match(template)
        if not match or match["method"] not in METHODS:
            raise SpecError(f"tfkd: bad run template {template!r} (methods: {', '.join(METHODS)}; e.g. kd:resnet18>mobilenetv2)")
        method, epoch = match["method"], match["epoch"] or match["snap"]
        if (method in ("kd", "dekd")) != bool(match["teacher"]) or (method in ("dekd", "snapshot")) != bool(epoch):
            raise SpecError(f"tfkd: template {template!r} does not fit method {method!r}")
        return cls(method, match["arch"], match["teacher"], int(epoch) if epoch else None)


class TfKD:
    """Turns templates into run specs for one setting and registers them."""

    def __init__(self, registry: Registry, experiment: dict[str, Any]):
        self.registry, self.experiment = registry, experiment
        self.config = registry.config
        self.settings = self.config["tfkd"]
        self.protocol = experiment["protocols"][self.config["protocol"]]
        self.seeds = paper_seeds(self.config, PAPER)
        check_substitutions(PAPER, self.settings["substitute"])
        # every snapshot epoch some cell asks of each trained teacher, so its scratch run saves them all
        self.snapshots: dict[str, set[int]] = {}
        for template in all_templates(experiment):
            cell = Cell.parse(template)
            if cell.epoch is not None:
                teacher = cell.teacher if cell.method == "dekd" else cell.arch
                self.snapshots.setdefault(self.trained(teacher), set()).add(self.scaled_epoch(cell.epoch))

    def trained(self, arch: str) -> str:
        return self.settings["substitute"].get(arch, arch)

    def scaled_epoch(self, reference_epoch: int) -> int:
        """An epoch of the reference 200 in this setting's epochs (0 stays the initialisation)."""
        reference = self.experiment["training"]["schedule"]["reference_epochs"]
        return round(reference_epoch * self.settings["epochs"] / reference)

    def runs(self, template: str, dataset: str) -> list[str]:
        """The run references (one per seed) behind a template; registers the runs and their teachers."""
        cell = Cell.parse(template)
        if cell.method == "snapshot":
            scratch = self.runs(f"scratch:{cell.arch}", dataset)
            return [f"{run}{SNAPSHOT}{self.scaled_epoch(cell.epoch)}" for run in scratch]
        names = []
        for seed in self.seeds:
            spec = self.spec(cell, dataset, seed)
            self.registry.add_runs({spec.name: spec})
            names.append(spec.name)
        return names

    def run_name(self, cell: Cell, dataset: str, seed: int) -> str:
        arch = self.trained(cell.arch)
        if cell.method in ("kd", "dekd"):
            teacher = self.trained(cell.teacher)
            if cell.method == "dekd":
                teacher += f"_ep{self.scaled_epoch(cell.epoch)}"
            arch = f"{teacher}-{arch}"
        return f"tfkd/{dataset}/{cell.method}/{arch}/s{seed}"

    def spec(self, cell: Cell, dataset: str, seed: int) -> RunSpec:
        student = self.trained(cell.arch)
        hyper = self.experiment["hyper"]
        nodes = [Node("student", student, self.options(student))]
        edges = [Edge(LABELS, "student", "ce")]
        save_epochs: tuple[int, ...] = ()
        if cell.method == "scratch":
            save_epochs = tuple(sorted(self.snapshots.get(student, ())))
        elif cell.method in ("kd", "self", "dekd"):
            scratch = Cell("scratch", cell.arch if cell.method == "self" else cell.teacher)
            teacher, teacher_run = self.trained(scratch.arch), self.run_name(scratch, dataset, seed)
            self.registry.add_runs({teacher_run: self.spec(scratch, dataset, seed)})
            epoch = self.scaled_epoch(cell.epoch) if cell.method == "dekd" else None
            nodes.insert(0, Node("teacher", teacher, self.options(teacher), frozen_from=teacher_run, frozen_epoch=epoch))
            if cell.method == "self":
                h = self.lookup(hyper["self"], student)
            else:  # normal KD and De-KD use loss_kd with the pair's params.json
                h = hyper["kd"].get("pairs", {}).get(f"{teacher}>{student}") or self.lookup(hyper["kd"], student)
            multiplier = h.get("multiplier", 1) if cell.method == "self" else 1
            edges = [Edge(LABELS, "student", "ce", weight=1 - h["alpha"]),
                     Edge("teacher", "student", "kd", weight=h["alpha"] * multiplier,
                          options={"temperature": h["temperature"], "class_reduction": self.experiment["kl_class_reduction"]})]
        elif cell.method == "reg":
            h = self.lookup(hyper["reg"], student)
            options = {"correct_prob": hyper["correct_prob"], "temperature": h["temperature"],
                       "class_reduction": self.experiment["kl_class_reduction"], **self.protocol["tfkd_reg"]}
            edges = [Edge(LABELS, "student", "ce", weight=1 - h["alpha"]),
                     Edge(LABELS, "student", "tfkd_reg", weight=h["alpha"] * h["multiplier"], options=options)]
        elif cell.method == "lsr":
            edges = [Edge(LABELS, "student", "label_smoothing", options={"epsilon": hyper["lsr_epsilon"], **self.protocol["label_smoothing"]})]
        return self.run_spec(self.run_name(cell, dataset, seed), dataset, seed, nodes, edges, save_epochs, self.batch_size(cell))

    def batch_size(self, cell: Cell) -> int:
        """The setting's tfkd.batch_size, else the cell's official params.json batch (tfkd.yaml `batch_size`)."""
        if self.settings["batch_size"]:
            return self.settings["batch_size"]
        official, student = self.experiment["batch_size"], self.trained(cell.arch)
        if cell.method in ("kd", "dekd"):
            return official["kd"].get(f"{self.trained(cell.teacher)}>{student}", official["default"])
        return official["self" if cell.method == "self" else "base"].get(student, official["default"])

    def run_spec(self, name: str, dataset: str, seed: int, nodes: list[Node], edges: list[Edge], save_epochs: tuple[int, ...],
                 batch: int) -> RunSpec:
        training, data = self.experiment["training"], self.config["data"]
        optimizer = dict(training["optimizer"], lr=training["optimizer"]["lr"] * batch / training["lr_reference_batch"])
        augmentation = training["augmentation"] if self.settings["augment"] else {}
        return RunSpec(
            name=name,
            data=Data(dataset=dataset, root=data["roots"].get(dataset), download=data["download"],
                      train_subset=data["train_subset"], test_subset=data["test_subset"], validation=data["validation"],
                      normalization="dataset", pad_to=data["pad_to"], **augmentation),
            nodes=tuple(nodes),
            edges=tuple(edges),
            epochs=self.settings["epochs"],
            seed=seed,
            batch_size=batch,
            optimizer=Optimizer(**optimizer),
            schedule=Schedule(**{**training["schedule"], "milestones": tuple(training["schedule"]["milestones"])}),
            save_epochs=save_epochs,
        )

    def options(self, arch: str) -> dict[str, Any]:
        return dict(self.settings["model_options"].get(model_info(arch)["family"], {}))

    @staticmethod
    def lookup(table: dict[str, Any], arch: str) -> dict[str, Any]:
        if arch not in table:
            raise SpecError(f"tfkd: no hyperparameters for {arch!r} (add it under `hyper` in config/experiments/tfkd.yaml)")
        return table[arch]

    def note(self) -> str:
        """What this setting trains in place of the paper's networks, for the captions."""
        text = substitution_note(self.settings["substitute"])
        options = ", ".join(f"{family} {opts}" for family, opts in self.settings["model_options"].items())
        return text + (f" Model options: {options}." if options else "")


def all_templates(experiment: dict[str, Any]) -> list[str]:
    from kdrepro.report.figures import KINDS

    templates = [t for table in experiment["tables"].values() for row in table["rows"] for t in row["cells"].values()]
    for figure in experiment["figures"].values():
        chains_of = KINDS[figure["kind"]][0]
        templates += [t for panel in figure["panels"] for t in chains_of(panel)]
    return templates


def build(registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]) -> None:
    tfkd = TfKD(registry, experiment)
    context = {"paper": PAPER, "paper_title": experiment["paper"], "report": experiment["report"]}
    for name, table in experiment["tables"].items():
        table = {**table, "caption": f"{table.get('caption', '')} {tfkd.note()}".strip()}
        registry.targets[name] = table_target(registry, name, table, paper_values, tfkd.runs, context)
    for name, figure in experiment["figures"].items():
        registry.targets[name] = figure_target(registry, name, figure, tfkd.runs, context)


def claims(results: Results) -> list[Claim]:
    """Tf-KD's claims, each judged on every dataset of the setting."""
    registry = results.registry
    experiment = registry.experiments[PAPER]
    tfkd = TfKD(registry, experiment)
    tables = experiment["tables"]
    out: list[Claim] = []
    for dataset in registry.config["datasets"]:
        stat = lambda template: results.stat(tfkd.runs(template, dataset))  # noqa: E731
        # rows that read the same runs (substituted networks) are judged once, all their labels named
        rows: dict[tuple, tuple[str, str, list[str]]] = {}  # (claim, judge, runs) -> (better, other, row labels)

        def add(claim: str, label: str, better: str, other: str, judge=compare) -> None:
            runs = tuple(tfkd.runs(better, dataset) + tfkd.runs(other, dataset))
            rows.setdefault((claim, judge, runs), (better, other, []))[2].append(label)

        for row in tables["tfkd_table_rekd"]["rows"]:
            c = row["cells"]
            add("Re-KD improves the teacher over its baseline", row["model"], c["Re-KD"], c["Teacher"])
        for row in tables["tfkd_table_dekd"]["rows"]:
            c = row["cells"]
            add("De-KD improves the student", f"{row['model']}, teacher at {stat(c['Pt-Teacher']).text()}", c["De-KD"], c["Student"])
        for row in tables["tfkd_table_self"]["rows"]:
            c = row["cells"]
            add("Tf-KD_self improves over the baseline", row["model"], c["Tf-KD_self"], c["Baseline"])
        for row in tables["tfkd_table_reg"]["rows"]:
            c = row["cells"]
            add("Tf-KD_reg improves over the baseline", row["model"], c["Tf-KD_reg"], c["Baseline"])
            add("Tf-KD_reg is comparable to normal KD", row["model"], c["Tf-KD_reg"], c["Normal KD"], _comparable_claim)
            add("Tf-KD_reg beats LSR", row["model"], c["Tf-KD_reg"], c["LSR"])
        out += [judge(f"{claim} ({'; '.join(labels)}; {dataset})", stat(better), stat(other))
                for (claim, judge, _), (better, other, labels) in rows.items()]
        out.append(_poorest_teacher_claim(experiment, tfkd, stat, dataset))
    return out


def _poorest_teacher_claim(experiment: dict[str, Any], tfkd: TfKD, stat, dataset: str) -> Claim:
    """De-KD with the poorest teacher of the De-KD figure (its earliest snapshot) against the student's baseline."""
    panel = experiment["figures"]["tfkd_fig_dekd"]["panels"][0]
    teacher, student, epoch = panel["teacher"], panel["student"], min(panel["epochs"])
    poor = stat(f"snapshot:{teacher}@{epoch}")
    return compare(f"De-KD improves the student even with a teacher near chance ({teacher} at {poor.text()}, {student}, {dataset})",
                   stat(f"dekd:{teacher}@{epoch}>{student}"), stat(f"scratch:{student}"))


def _comparable_claim(statement: str, reg: Stat, kd: Stat) -> Claim:
    """Comparable: Tf-KD_reg at most COMPARABLE_POINTS (or the larger seed std) below normal KD."""
    if not reg.values or not kd.values:
        return Claim(statement, "inconclusive: missing runs", f"{reg.text()} vs {kd.text()}")
    tolerance = max([COMPARABLE_POINTS] + [s.std for s in (reg, kd) if s.n > 1])
    judged = "supported" if reg.mean >= kd.mean - tolerance else "not supported"
    return Claim(statement, judged, f"{reg.text()} vs {kd.text()} (within {tolerance:.2f} points counts as comparable)")
