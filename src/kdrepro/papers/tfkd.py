"""Tf-KD (Yuan et al., CVPR 2020): Re-KD, De-KD, Tf-KD_self, Tf-KD_reg and label smoothing.

Every cell of the tables is a run template (see config/experiments/tfkd.yaml): "scratch:A",
"kd:T>S", "self:A", "dekd:T@E>S", "reg:A", "lsr:A", "snapshot:T@E". A template names the paper's
architectures; the setting may train a smaller member in place of one (tfkd.substitute), and runs
are named after what is trained, so two cells that end up training the same thing share one run.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from kdrepro.data.meta import chance_level
from kdrepro.experiments import SNAPSHOT, Registry, Target, num_classes
from kdrepro.graph import LABELS, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.papers.base import Paper
from kdrepro.report.claims import Claim, PaperEffect, compare, equivalence
from kdrepro.report.figures import KINDS, figure_kind, mark_not_trained
from kdrepro.report.results import Stat

METHODS = ("scratch", "kd", "self", "dekd", "reg", "lsr", "snapshot")
TEMPLATE = re.compile(r"^(?P<method>[a-z]+):(?:(?P<teacher>[a-z0-9_]+)(?:@(?P<epoch>\d+))?>)?(?P<arch>[a-z0-9_]+)(?:@(?P<snap>\d+))?$")
# the hyper-parameters each method's edges read (TfKD.specs): needed, and optional (Tf-KD_self's multiplier is 1
# where its params.json has none; normal KD and De-KD have no multiplier in the official loss_kd)
HYPER_KEYS = {"kd": (("alpha", "temperature"), ()), "self": (("alpha", "temperature"), ("multiplier",)),
              "reg": (("alpha", "temperature", "multiplier"), ())}
COMPARABLE_POINTS = 0.5  # "Tf-KD_reg is comparable to normal KD": the equivalence margin (the paper's own gaps are 0.04-0.38)


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


class TfKD(Paper):
    name = "tfkd"

    def __init__(self, registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]):
        super().__init__(registry, experiment, paper_values)
        self.hyper = merged_hyper(experiment["hyper"], self.settings["hyper"])
        # every snapshot epoch some cell asks of each trained teacher, so its scratch run saves them all
        self.snapshots: dict[str, set[int]] = {}
        for template in all_templates(experiment):
            cell = Cell.parse(template)
            if cell.epoch is not None:
                teacher = cell.teacher if cell.method == "dekd" else cell.arch
                self.snapshots.setdefault(self.trained(teacher), set()).add(self.scaled_epoch(cell.epoch))

    def scaled_epoch(self, reference_epoch: int) -> int:
        """An epoch of the reference 200 in this setting's epochs (0 stays the initialisation)."""
        reference = self.experiment["training"]["schedule"]["reference_epochs"]
        return round(reference_epoch * self.settings["epochs"] / reference)

    def seed_run(self, template: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        cell = Cell.parse(template)
        if cell.method == "snapshot":
            scratch, specs = self.seed_run(f"scratch:{cell.arch}", dataset, seed)
            return f"{scratch}{SNAPSHOT}{self.scaled_epoch(cell.epoch)}", specs
        specs = self.specs(cell, dataset, seed)
        return next(reversed(specs)), specs

    def run_name(self, cell: Cell, dataset: str, seed: int) -> str:
        arch = self.trained(cell.arch)
        if cell.method in ("kd", "dekd"):
            teacher = self.trained(cell.teacher)
            if cell.method == "dekd":
                teacher += f"_ep{self.scaled_epoch(cell.epoch)}"
            arch = f"{teacher}-{arch}"
        return f"tfkd/{dataset}/{cell.method}/{arch}/s{seed}"

    def specs(self, cell: Cell, dataset: str, seed: int) -> dict[str, RunSpec]:
        """The cell's run, after the scratch run of its teacher where it has one."""
        student = self.trained(cell.arch)
        hyper = self.hyper
        nodes = [Node("student", student, self.options(student))]
        edges = [Edge(LABELS, "student", "ce")]
        specs: dict[str, RunSpec] = {}
        save_epochs: tuple[int, ...] = ()
        if cell.method == "scratch":
            save_epochs = tuple(sorted(self.snapshots.get(student, ())))
        elif cell.method in ("kd", "self", "dekd"):
            scratch = Cell("scratch", cell.arch if cell.method == "self" else cell.teacher)
            specs = self.specs(scratch, dataset, seed)
            teacher, teacher_run = self.trained(scratch.arch), self.run_name(scratch, dataset, seed)
            epoch = self.scaled_epoch(cell.epoch) if cell.method == "dekd" else None
            nodes.insert(0, Node("teacher", teacher, self.options(teacher), frozen_from=teacher_run, frozen_epoch=epoch))
            if cell.method == "self":
                h = self.lookup_hyper(hyper["self"], student)
            else:  # normal KD and De-KD use loss_kd with the pair's params.json
                h = hyper["kd"].get("pairs", {}).get(f"{teacher}>{student}") or self.lookup_hyper(hyper["kd"], student)
            multiplier = h.get("multiplier", 1) if cell.method == "self" else 1
            edges = [Edge(LABELS, "student", "ce", weight=1 - h["alpha"]),
                     Edge("teacher", "student", "kd", weight=h["alpha"] * multiplier,
                          options={"temperature": h["temperature"], "class_reduction": self.experiment["kl_class_reduction"]})]
        elif cell.method == "reg":
            h = self.lookup_hyper(hyper["reg"], student)
            options = {"correct_prob": hyper["correct_prob"], "temperature": h["temperature"],
                       "class_reduction": self.experiment["kl_class_reduction"], **self.protocol["tfkd_reg"]}
            edges = [Edge(LABELS, "student", "ce", weight=1 - h["alpha"]),
                     Edge(LABELS, "student", "tfkd_reg", weight=h["alpha"] * h["multiplier"], options=options)]
        elif cell.method == "lsr":
            edges = [Edge(LABELS, "student", "label_smoothing", options={"epsilon": hyper["lsr_epsilon"], **self.protocol["label_smoothing"]})]
        name = self.run_name(cell, dataset, seed)
        specs[name] = self.run_spec(name, dataset, seed, nodes, edges, save_epochs, self.batch_size(cell))
        return specs

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
        training = self.experiment["training"]
        optimizer = dict(training["optimizer"], lr=training["optimizer"]["lr"] * batch / training["lr_reference_batch"])
        return RunSpec(
            name=name,
            data=self.data(dataset, **self.augmentation(training)),
            nodes=tuple(nodes),
            edges=tuple(edges),
            epochs=self.settings["epochs"],
            seed=seed,
            batch_size=batch,
            optimizer=Optimizer(**optimizer),
            schedule=Schedule(**{**training["schedule"], "milestones": tuple(training["schedule"]["milestones"])}),
            save_epochs=save_epochs,
        )

    @staticmethod
    def lookup_hyper(table: dict[str, Any], arch: str) -> dict[str, Any]:
        if arch not in table:
            raise SpecError(f"tfkd: no hyperparameters for {arch!r} (add it under `hyper` in config/experiments/tfkd.yaml)")
        return table[arch]

    def note(self) -> str:
        """What this setting trains in place of the paper's networks, and with other hyper-parameters than the
        official ones, for the captions."""
        options = ", ".join(f"{family} {opts}" for family, opts in self.settings["model_options"].items())
        changed = "; ".join(f"{method} {arch}: {', '.join(f'{k} {v:g}' for k, v in values.items())}"
                            for method, table in self.settings["hyper"].items() for arch, values in table.items())
        return (self.substitution_note() + (f" Model options: {options}." if options else "")
                + (f" Hyper-parameters set by this setting in place of the official params.json (tfkd.hyper): {changed}." if changed else ""))

    def table(self, name: str, decl: dict[str, Any]) -> Target:
        return super().table(name, {**decl, "caption": f"{decl.get('caption', '')} {self.note()}".strip()})

    def claims(self) -> list[Claim]:
        tables = self.experiment["tables"]
        out: list[Claim] = []
        for dataset in self.config["datasets"]:
            stat = lambda template: self.stat(template, dataset)  # noqa: E731
            # rows that read the same runs (substituted networks) are judged once, all their labels named
            rows: dict[tuple, tuple[str, str, list[str], PaperEffect | None]] = {}  # (claim, judge, runs) -> (better, other, labels, paper)

            def add(claim: str, table: str, row: dict[str, Any], better: str, other: str, judge=compare, label: str = "") -> None:
                c = row["cells"]
                runs = tuple(self.runs(c[better], dataset) + self.runs(c[other], dataset))
                paper = self.published_gap(table, (row["model"], better), (row["model"], other))
                rows.setdefault((claim, judge, runs), (c[better], c[other], [], paper))[2].append(label or row["model"])

            for row in tables["tfkd_table_rekd"]["rows"]:
                add("Re-KD improves the teacher over its baseline", "tfkd_table_rekd", row, "Re-KD", "Teacher")
            for row in tables["tfkd_table_dekd"]["rows"]:
                snapshot = Cell.parse(row["cells"]["Pt-Teacher"])
                at_init = " — beyond the paper: its teacher is the initialisation in this setting" if self.scaled_epoch(snapshot.epoch) == 0 else ""
                add("De-KD improves the student", "tfkd_table_dekd", row, "De-KD", "Student",
                    label=f"{row['model']}, teacher at {stat(row['cells']['Pt-Teacher']).text()}{at_init}")
            for row in tables["tfkd_table_self"]["rows"]:
                add("Tf-KD_self improves over the baseline", "tfkd_table_self", row, "Tf-KD_self", "Baseline")
            for row in tables["tfkd_table_reg"]["rows"]:
                add("Tf-KD_reg improves over the baseline", "tfkd_table_reg", row, "Tf-KD_reg", "Baseline")
                add("Tf-KD_reg is comparable to normal KD", "tfkd_table_reg", row, "Tf-KD_reg", "Normal KD", comparable_claim)
                add("Tf-KD_reg beats LSR", "tfkd_table_reg", row, "Tf-KD_reg", "LSR")
            out += [judge(f"{claim} ({'; '.join(labels)}; {dataset})", stat(better), stat(other), paper)
                    for (claim, judge, _), (better, other, labels, paper) in rows.items()]
            out.append(self.poorly_trained_teacher_claim(dataset))
        return out

    def poorly_trained_teacher_claim(self, dataset: str) -> Claim:
        """De-KD with the poorly trained teacher of the De-KD figure against the student's baseline. The paper's
        poorly trained teacher (ResNet18 after 1 of 200 epochs, 15.48% on CIFAR-100, row "ResNet18@1" of its
        De-KD results) has learnt something; the initialisation has not, and the last epoch's model is the
        trained teacher. So the teacher is the earliest of the figure's snapshots strictly between the two whose
        mean accuracy lies above chance (by the margin that flags a run as not trained,
        data.meta.chance_level): a choice made on the teacher's accuracy alone, never on the students'."""
        panel = self.experiment["figures"]["tfkd_fig_dekd"]["panels"][0]
        teacher, student = panel["teacher"], panel["student"]
        paper = self.published_gap("tfkd_table_dekd", ("ResNet18@1 / MobileNetV2", "De-KD"), ("ResNet18@1 / MobileNetV2", "Student"))
        statement = f"De-KD improves the student even with a poorly trained teacher ({teacher}, {student}, {dataset})"
        baseline = self.stat(f"scratch:{student}", dataset)
        seen = []
        for epoch in sorted(panel["epochs"]):
            scaled = self.scaled_epoch(epoch)
            if scaled in (0, self.settings["epochs"]) or scaled in (e for e, _ in seen):
                continue  # the initialisation has learnt nothing; the last epoch's model is the trained teacher
            poor = self.stat(f"snapshot:{teacher}@{epoch}", dataset)
            seen.append((scaled, poor))
            if not poor.values:
                continue
            chance, margin = chance_level(num_classes(dataset, self.config), poor.test_images)
            if poor.mean > chance + margin:
                return compare(f"{statement[:-1]}; teacher after epoch {scaled} of {self.settings['epochs']}, at {poor.text()})",
                               self.stat(f"dekd:{teacher}@{epoch}>{student}", dataset), baseline, paper)
        found = ", ".join(f"epoch {e}: {s.text()}" for e, s in seen) or "none between the initialisation and the last epoch"
        return Claim(statement, "inconclusive: no snapshot of the teacher between its initialisation and its last epoch lies above chance",
                     f"teacher snapshots: {found}", paper=paper)


def merged_hyper(official: dict[str, Any], overrides: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The official hyper-parameter table (tfkd.yaml `hyper`) with a setting's `tfkd.hyper` laid over it, key by
    key: {method: {student (or teacher>student under kd's pairs): {alpha, temperature, multiplier}}}."""
    merged = copy.deepcopy(official)
    for method, table in overrides.items():
        needed, optional = HYPER_KEYS[method]
        for arch, values in table.items():
            unread = sorted(set(values) - set(needed) - set(optional))
            if unread:
                raise SpecError(f"tfkd.hyper.{method}.{arch}: {method} does not read {', '.join(unread)} "
                                f"(it reads {', '.join(needed + optional)})")
            where = merged[method].setdefault("pairs", {}) if method == "kd" and ">" in arch else merged[method]
            where[arch] = {**where.get(arch, {}), **values}
            missing = [key for key in needed if key not in where[arch]]
            if missing:
                raise SpecError(f"tfkd.hyper.{method}.{arch}: no official values to complete it; give {', '.join(missing)}")
    return merged


def all_templates(experiment: dict[str, Any]) -> list[str]:
    """Every run template the experiment's tables and figures name."""
    templates = [t for table in experiment["tables"].values() for row in table["rows"] for t in row["cells"].values()]
    for figure in experiment["figures"].values():
        chains_of = KINDS[figure["kind"]][0]
        templates += [t for panel in figure["panels"] for t in chains_of(panel)]
    return templates


def comparable_claim(statement: str, reg: Stat, kd: Stat, paper: PaperEffect | None = None) -> Claim:
    """Comparable: an equivalence test of Tf-KD_reg against normal KD within ±COMPARABLE_POINTS."""
    return equivalence(statement, reg, kd, COMPARABLE_POINTS, paper)


# -- figure kinds ------------------------------------------------------------------------------------

@figure_kind("defective_teacher", lambda p: [f"{kind}:{p['teacher']}@{e}{tail}" for e in p["epochs"]
                                           for kind, tail in (("snapshot", ""), ("dekd", f">{p['student']}"))]
             + [f"scratch:{p['student']}"])
def defective_teacher(ax, panel, stat) -> list[dict[str, Any]]:
    """The De-KD student's accuracy against its poorly trained teacher's; the student's baseline as a line."""
    teacher, student = panel["teacher"], panel["student"]
    rows, students, seen = [], [], set()
    for epoch in panel["epochs"]:
        runs = tuple(stat.resolve(f"dekd:{teacher}@{epoch}>{student}"))
        if runs in seen:  # reference epochs that scale to the same epoch of a short run
            continue
        seen.add(runs)
        poor, taught = stat(f"snapshot:{teacher}@{epoch}"), stat(f"dekd:{teacher}@{epoch}>{student}")
        trained_epochs = int(stat.resolve(f"snapshot:{teacher}@{epoch}")[0].rpartition(SNAPSHOT)[2])
        rows.append({"teacher_reference_epoch": epoch, "teacher_epoch": trained_epochs, "teacher_mean": poor.mean,
                     "teacher_std": poor.std, "student_mean": taught.mean, "student_std": taught.std, "n": taught.n, "ours": taught.text()})
        students.append(taught)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["teacher_mean"])
    rows, students = [rows[i] for i in order], [students[i] for i in order]
    baseline = stat(f"scratch:{student}")
    ax.errorbar([r["teacher_mean"] for r in rows], [r["student_mean"] for r in rows],
                yerr=[0 if r["n"] < 2 else r["student_std"] for r in rows], marker="o", capsize=3, label=f"{student} taught (De-KD)")
    mark_not_trained(ax, [r["teacher_mean"] for r in rows], [r["student_mean"] for r in rows], students)
    ax.axhline(baseline.mean, color="tab:red", label=f"{student} baseline {baseline.text()}")
    for r in rows:
        ax.annotate(f"epoch {r['teacher_epoch']}", (r["teacher_mean"], r["student_mean"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 4))
    ax.set_xlabel(f"poorly trained teacher {teacher}: test accuracy (%)")
    ax.set_ylabel("student test accuracy (%)")
    return rows + [{"teacher_reference_epoch": "baseline", "student_mean": baseline.mean, "student_std": baseline.std, "n": baseline.n}]


@figure_kind("curves", lambda p: list(p["lines"].values()))
def curves(ax, panel, stat) -> list[dict[str, Any]]:
    """Test accuracy after every epoch, the mean over seeds with the seeds' range shaded."""
    # imported here, its only user, not with the module: building the registry (every Snakemake parse) draws nothing
    from matplotlib.ticker import MaxNLocator

    rows = []
    for label, template in panel["lines"].items():
        frame = stat.curves(template)
        if frame.empty:
            continue
        mean, low, high = frame.mean(axis=1), frame.min(axis=1), frame.max(axis=1)
        ax.plot(mean.index, mean, label=label)
        ax.fill_between(mean.index, low, high, alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        rows += [{"line": label, "epoch": int(e), "mean": m, "min": lo, "max": hi, "n": frame.shape[1]}
                 for e, m, lo, hi in zip(mean.index, mean, low, high)]
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    return rows
