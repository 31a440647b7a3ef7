"""FitNets (Romero et al., ICLR 2015): hint pre-training, stage-wise KD, Tables 1-5, the AFLW table, Fig. 3.

Every cell is a run template (config/experiments/fitnets.yaml): "scratch:A" (standard backprop),
"kd:A" (KD from the dataset's teacher), "hint:A" (stage 1) and "fitnet:A" (stage 2); "A@B" names the
Fig. 3 student costing B million multiplications. The two stages of Algorithm 1 are two runs:

* stage 1 (hint:A) is a graph of the frozen teacher and the trainable student with one edge,
  `fitnets_hint`, from the teacher's hint layer to the student's guided layer (module paths in the edge
  options, read through FeatureTap) whose regressor is the edge's module. No label edge: the student's
  layers after the guided one receive no gradient (the optimizer skips parameters without one), so the
  run's test accuracy is that of an untrained head and is never reported.
* stage 2 (fitnet:A) is the KD run of A whose student node has init_from = the stage-1 run and
  init_layers = the layers up to the guided one (the official code copies layers 0..guided); every
  other layer starts from the same fresh initialisation as scratch:A and kd:A (same seed, same node
  position), so the three methods differ only in what the paper varies.

The KD term is `kd_ce` (cross-entropy to the softened teacher, no tau^2, Eq. 2), weighted by the
`linear_decay` gate (lambda 4 -> 1 over epochs 5..400 of the reference 288, as fractions of the run);
fitnets.tau_squared uses Hinton's tau^2 KL instead, fitnets.lr_scale scales the rate of the layers
copied from stage 1 (the official -lrs).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import pandas as pd
import torch

from kdrepro.bench import inference_seconds
from kdrepro.experiments import INPUT_CHANNELS, NATIVE_SIZE, TEST_SIZE, Target, num_classes, run_of
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.models import create_model
from kdrepro.models.maxout import ARCHS, count_layers, count_multiplications, count_weights, hint_layers
from kdrepro.models.registry import entry
from kdrepro.papers.base import Paper
from kdrepro.report.claims import Claim, compare
from kdrepro.report.figures import errorbar, figure_kind, figure_target
from kdrepro.report.results import Stat
from kdrepro.report.tables import TableContent, caption, frame_table

METHODS = ("scratch", "kd", "hint", "fitnet")
TEMPLATE = re.compile(r"^(?P<method>[a-z]+):(?P<arch>[a-z0-9_]+)(?:@(?P<budget>[0-9.]+))?$")
OWN_TABLE = ("cifar100", "svhn", "mnist")  # datasets with a table of their own; table 1 takes the others
SPEED_IMAGES = 1024  # inference timing: at most this many test images per pass
SPEED_REPEATS = 3


def parse(template: str) -> tuple[str, str, float | None]:
    match = TEMPLATE.match(template)
    if not match or match["method"] not in METHODS:
        raise SpecError(f"fitnets: bad run template {template!r} (methods: {', '.join(METHODS)}; e.g. fitnet:fitnet4)")
    budget = float(match["budget"]) if match["budget"] else None
    if (budget is None) == match["arch"].startswith("fitnet_depth"):
        raise SpecError(f"fitnets: template {template!r}: a budget (@millions) goes with fitnet_depthN and only with it")
    return match["method"], match["arch"], budget


def guided_layers(arch: str) -> tuple[str, ...]:
    """The module paths of layers 0..guided (Algorithm 1's W_Guided)."""
    last = int(hint_layers(arch).rsplit(".h", 1)[1])
    return tuple(f"features.h{i}" for i in range(last + 1))


class FitNets(Paper):
    name = "fitnets"

    # -- datasets ------------------------------------------------------------------------------
    def datasets(self, paper_dataset: str) -> list[str]:
        """The setting's datasets a table or figure runs on: its own dataset if the setting has it;
        for CIFAR-10's (table 1, table 5, Fig. 3) every dataset without a table of its own."""
        setting = self.config["datasets"]
        if paper_dataset == "cifar10":
            return [d for d in setting if d not in OWN_TABLE]
        return [paper_dataset] if paper_dataset in setting else []

    def recipe(self, dataset: str) -> dict[str, Any]:
        return self.experiment["recipes"]["mnist" if dataset == "mnist" else "cifar"]

    def teacher(self, dataset: str) -> str:
        teachers = self.experiment["teachers"]
        return teachers.get(dataset, teachers["default"])

    def input_shape(self, dataset: str) -> tuple[int, int]:
        """(channels, size) of the images the networks see in this setting."""
        pad_to = self.config["data"]["pad_to"]
        size = NATIVE_SIZE.get(dataset, 32)
        return INPUT_CHANNELS.get(dataset, 3), max(size, pad_to) if pad_to else size

    def data(self, dataset: str, **overrides: Any) -> Data:
        """FitNets' own training subset, no validation split, the recipe's augmentation."""
        own = {"train_subset": self.settings["train_subset"] or self.config["data"]["train_subset"], "validation": 0,
               **self.augmentation(self.recipe(dataset))}
        return super().data(dataset, **(own | overrides))

    # -- runs ----------------------------------------------------------------------------------
    def options(self, arch: str, budget: float | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {"init_range": self.settings["init_range"]}
        if budget is not None:
            options["budget"] = budget * 1e6
        elif self.settings["width"] != 1:
            options["width"] = self.settings["width"]
        return options

    def run_name(self, method: str, arch: str, budget: float | None, dataset: str, seed: int) -> str:
        trained = arch if budget is None else f"{arch}-b{budget:g}M"
        if method != "scratch":
            trained = f"{self.teacher(dataset)}-{trained}"
        return f"fitnets/{dataset}/{method}/{trained}/s{seed}"

    def seed_run(self, template: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        method, arch, budget = parse(template)
        arch = self.teacher(dataset) if arch == "teacher" else arch
        specs = self.specs(method, arch, budget, dataset, seed)
        return next(reversed(specs)), specs

    def specs(self, method: str, arch: str, budget: float | None, dataset: str, seed: int) -> dict[str, RunSpec]:
        """The run of `method` on `arch`, after the runs it needs (the teacher; stage 1 of a FitNet)."""
        name = self.run_name(method, arch, budget, dataset, seed)
        student = Node("student", arch, self.options(arch, budget))
        if method == "scratch":
            is_teacher = arch == self.teacher(dataset)
            epochs = (self.settings["teacher_epochs"] or self.settings["epochs"]) if is_teacher else self.settings["epochs"]
            return {name: self.run_spec(name, dataset, seed, (student,), (Edge(LABELS, "student", "ce"),), epochs)}
        teacher_arch = self.teacher(dataset)
        specs = self.specs("scratch", teacher_arch, None, dataset, seed)
        teacher = Node("teacher", teacher_arch, self.options(teacher_arch), frozen_from=next(reversed(specs)))
        if method == "hint":
            hint = Edge("teacher", "student", "fitnets_hint", options={
                "source_layer": hint_layers(teacher_arch), "target_layer": hint_layers(arch),
                "reduction": self.protocol["hint_reduction"]})
            specs[name] = self.run_spec(name, dataset, seed, (teacher, student), (hint,), self.settings["hint_epochs"])
            return specs
        if method == "fitnet":
            specs |= self.specs("hint", arch, budget, dataset, seed)
            student = replace(student, init_from=next(reversed(specs)), init_layers=guided_layers(arch),
                              init_lr_scale=self.settings["lr_scale"])
        specs[name] = self.run_spec(name, dataset, seed, (teacher, student), self.kd_edges(dataset), self.settings["epochs"])
        return specs

    def kd_edges(self, dataset: str) -> tuple[Edge, ...]:
        """CE on the labels plus lambda * the KD term, lambda annealed linearly (TeacherDecayOverEpoch)."""
        recipe = self.recipe(dataset)
        lam, reference = recipe["lambda"], recipe["reference_epochs"]
        decay = {"start": lam["start"], "end": lam["end"], "begin": lam["begin_epoch"] / reference,
                 "until": lam["end_epoch"] / reference}
        loss = "kd" if self.settings["tau_squared"] else "kd_ce"
        kd = Edge("teacher", "student", loss, gate="linear_decay", gate_options=decay,
                  options={"temperature": self.hyper("temperature")})
        return Edge(LABELS, "student", "ce"), kd

    def run_spec(self, name: str, dataset: str, seed: int, nodes: tuple[Node, ...], edges: tuple[Edge, ...],
                 epochs: int) -> RunSpec:
        recipe = self.recipe(dataset)
        return RunSpec(
            name=name, data=self.data(dataset), nodes=nodes, edges=edges, epochs=epochs, seed=seed,
            batch_size=self.settings["batch_size"],
            optimizer=Optimizer(**{**recipe["optimizer"], "lr": self.settings["lr"] or recipe["optimizer"]["lr"]}),
            schedule=Schedule("constant"),
        )

    def note(self) -> str:
        s = self.settings
        return (f"Setting scale: {s['epochs']} epochs (paper 288 on CIFAR), hint stage {s['hint_epochs']} epoch(s), "
                f"maxout widths x{s['width']}, init_range {s['init_range']}, "
                f"{'augmentation as the official code' if s['augment'] else 'no augmentation'}, no GCN/ZCA whitening and no "
                f"max-norm constraints; KD term {'tau^2 KL (Hinton)' if s['tau_squared'] else 'cross-entropy without tau^2 (Eq. 2)'}, "
                f"lambda annealed linearly; lr scale of the stage-1 layers {s['lr_scale']:g}; RMSProp.")

    # -- networks as trained ---------------------------------------------------------------------
    def network(self, arch: str, dataset: str, budget: float | None = None) -> torch.nn.Module:
        """A fresh `arch` as this setting trains it on `dataset`."""
        channels, size = self.input_shape(dataset)
        return create_model(arch, num_classes(dataset, self.config), channels, size, **self.options(arch, budget))

    def counts(self, arch: str, dataset: str | None, budget: float | None = None) -> dict[str, float]:
        """Paper-counted weights and multiplications of `arch` as trained on `dataset` (None: at full width
        on a 32x32x3 CIFAR-10 input, the paper's)."""
        if dataset is None:
            if arch not in ARCHS:
                return {}
            mult, params = count_layers(ARCHS[arch], 10, 3, 32)
            return {"params": params, "mult": mult}
        channels, size = self.input_shape(dataset)
        model = self.network(arch, dataset, budget)
        return {"params": count_weights(model), "mult": count_multiplications(model, channels, size)}

    def inference_seconds(self, archs: list[str], dataset: str) -> tuple[dict[str, float], str]:
        """Seconds of one pass over (at most SPEED_IMAGES of) the test split per network as trained, with the
        setting's threads; weights do not change the time, so the networks are freshly built."""
        channels, size = self.input_shape(dataset)
        n = min(TEST_SIZE.get(dataset, 10_000), self.config["data"]["test_subset"] or SPEED_IMAGES, SPEED_IMAGES)
        images = torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(0))
        networks = {arch: self.network(arch, dataset) for arch in archs}
        return inference_seconds(networks, images, self.config["threads_per_job"], repeats=SPEED_REPEATS)

    def not_run_reason(self, paper_dataset: str) -> str:
        if paper_dataset == "aflw":
            root = self.config["data"]["roots"].get("aflw")
            return (f"not run: AFLW data configured at {root}, but this package has no AFLW loader or the paper's ReLU networks"
                    if root else "not run: AFLW data is not configured (data.roots.aflw)")
        return f"not run: {paper_dataset} is not in setting {self.registry.setting}"

    def ours_on(self, datasets: list[str], paper_dataset: str) -> str:
        return f" Ours on {', '.join(datasets)} (the setting's data), the paper's on {paper_dataset}." if datasets and paper_dataset not in datasets else ""

    # -- tables ----------------------------------------------------------------------------------
    def build(self) -> None:
        for name, decl in self.experiment["tables"].items():
            table = self.tradeoff_table if name == "fitnets_table5" else self.accuracy_table
            self.registry.targets[name] = table(name, decl)
        for name, decl in self.experiment["figures"].items():
            self.registry.targets[name] = self.figure(name, decl)

    def accuracy_table(self, name: str, decl: dict[str, Any]) -> Target:
        """Tables 1-4 and AFLW: per dataset of ours, every row with ours (params, metric) beside the paper's."""
        paper_dataset, metric = decl["dataset"], decl["metric"]
        datasets = [] if paper_dataset == "aflw" else self.datasets(paper_dataset)
        published = self.paper_values.get(name, {})
        cells = {(row["algorithm"], ds): self.register(row["template"], ds) for row in decl["rows"] if row.get("template") for ds in datasets}
        label = "Accuracy" if metric == "accuracy" else "Misclass"

        def content() -> TableContent:
            records = []
            for ds in datasets or [None]:
                for row in decl["rows"]:
                    algorithm = row["algorithm"]
                    paper = published.get(algorithm, {})
                    runs = cells.get((algorithm, ds), [])
                    record = {"group": row.get("group", ""), "algorithm": algorithm, "dataset": ds or paper_dataset,
                              "paper_dataset": paper_dataset, "params_ours": None, "ours_mean": None, "ours_std": None, "n_seeds": 0}
                    if ds is None:
                        record["ours"] = self.not_run_reason(paper_dataset)
                    elif not runs:
                        record["ours"] = "not reproduced (another method, cited by the paper)"
                    else:
                        stat = self.results.stat(runs)
                        mean, std, text = metric_of(stat, metric)
                        student = self.registry.runs[run_of(runs[0])].node("student")
                        budget = student.options.get("budget")
                        counts = self.counts(student.arch, ds, budget / 1e6 if budget else None)
                        record.update(params_ours=counts["params"], ours_mean=mean, ours_std=std, n_seeds=stat.n, ours=text)
                    record.update(paper=paper.get("value"), paper_params=paper.get("params", ""), paper_tag=paper.get("tag", ""),
                                  runs=" ".join(runs))
                    records.append(record)
            frame = pd.DataFrame.from_records(records)
            frame["# params (ours)"] = frame["params_ours"].map(lambda v: human(v) if isinstance(v, (int, float)) and not pd.isna(v) else "–")
            frame[f"{label} % (ours)"] = frame["ours"]
            frame[f"{label} % (paper, {paper_dataset})"] = [
                "–" if pd.isna(v) or v is None else f"{v:g} [{t}]" for v, t in zip(frame["paper"], frame["paper_tag"])]
            frame["# params (paper)"] = frame["paper_params"].replace("", "–")
            shown = ["group", "algorithm", "dataset", "# params (ours)", "# params (paper)", f"{label} % (ours)",
                     f"{label} % (paper, {paper_dataset})"]
            if not any(frame["group"]):
                shown.remove("group")
            note = decl.get("caption", "") + self.ours_on(datasets, paper_dataset)
            text = caption(self.registry, decl["title"], f"{note} {self.note()} # params counted as the paper does (weights only).".strip(),
                           self.results, self.paper_values.get("source", ""))
            return TableContent(frame, text, shown)

        return frame_table(self.registry, name, self.name, [r for rs in cells.values() for r in rs], content)

    def tradeoff_table(self, name: str, decl: dict[str, Any]) -> Target:
        """Table 5: layers, parameters and multiplications (the paper's counts), accuracy, measured speed-up and compression."""
        datasets = self.datasets(decl["dataset"])
        published = self.paper_values.get(name, {})
        cells = {(row["algorithm"], ds): self.register(row["template"], ds) for row in decl["rows"] for ds in datasets}

        def content() -> TableContent:
            records = []
            for ds in datasets or [None]:
                archs = {row["algorithm"]: self.teacher(ds or "cifar10") if row["arch"] == "teacher" else row["arch"] for row in decl["rows"]}
                times, machine = self.inference_seconds(list(archs.values()), ds) if ds else ({}, "")
                trained = {a: self.counts(arch, ds) for a, arch in archs.items()} if ds else {}
                teacher = decl["rows"][0]["algorithm"]
                for row in decl["rows"]:
                    algorithm, arch = row["algorithm"], archs[row["algorithm"]]
                    full = self.counts(arch, None)
                    paper = published.get(algorithm, {})
                    record = {"network": algorithm, "arch": arch, "dataset": ds or decl["dataset"], "layers": entry(arch).depth,
                              "params_full": full["params"], "mult_full": full["mult"]}
                    if ds:
                        runs = cells[(algorithm, ds)]
                        stat = self.results.stat(runs)
                        mean, std, text = metric_of(stat, "accuracy")
                        record.update(params_trained=trained[algorithm]["params"], mult_trained=trained[algorithm]["mult"],
                                      ours_mean=mean, ours_std=std, n_seeds=stat.n, ours=text,
                                      seconds=times[arch], speedup=times[archs[teacher]] / times[arch],
                                      compression=trained[teacher]["params"] / trained[algorithm]["params"],
                                      machine=machine, runs=" ".join(runs))
                    else:
                        record["ours"] = self.not_run_reason(decl["dataset"])
                    record.update({f"paper_{k}": paper.get(k) for k in ("layers", "params", "mult", "value", "speedup", "compression")})
                    record["paper_tag"] = paper.get("tag", "")
                    records.append(record)
            frame = pd.DataFrame.from_records(records)
            fmt = lambda v, f: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f(v)  # noqa: E731
            frame["# layers (ours / paper)"] = [f"{a} / {fmt(b, str)}" for a, b in zip(frame["layers"], frame["paper_layers"])]
            frame["# params full (ours / paper)"] = [f"{human(a)} / {fmt(b, str)}" for a, b in zip(frame["params_full"], frame["paper_params"])]
            frame["# mult full (ours / paper)"] = [f"{human(a)} / {fmt(b, str)}" for a, b in zip(frame["mult_full"], frame["paper_mult"])]
            frame["Acc % (ours)"] = frame["ours"]
            frame["Acc % (paper)"] = [fmt(v, lambda x: f"{x:g}") for v in frame["paper_value"]]
            shown = ["network", "dataset", "# layers (ours / paper)", "# params full (ours / paper)", "# mult full (ours / paper)"]
            if "speedup" in frame:
                frame["# params / # mult as trained"] = [f"{human(p)} / {human(m)}" for p, m in zip(frame["params_trained"], frame["mult_trained"])]
                frame["Speed-up (ours)"] = [fmt(v, lambda x: f"{x:.2f}") for v in frame["speedup"]]
                frame["Compression (ours)"] = [fmt(v, lambda x: f"{x:.2f}") for v in frame["compression"]]
                shown += ["# params / # mult as trained", "Acc % (ours)", "Acc % (paper)", "Speed-up (ours)"]
            else:
                shown += ["Acc % (ours)", "Acc % (paper)"]
            frame["Speed-up (paper)"] = [fmt(v, lambda x: f"{x:g}") for v in frame["paper_speedup"]]
            shown.append("Speed-up (paper)")
            if "compression" in frame:
                shown.append("Compression (ours)")
            frame["Compression (paper)"] = [fmt(v, lambda x: f"{x:g}") for v in frame["paper_compression"]]
            shown.append("Compression (paper)")
            measured = f" Timed on {frame['machine'].dropna().iloc[0]}." if "machine" in frame and frame["machine"].notna().any() else ""
            note = decl.get("caption", "") + measured + self.ours_on(datasets, decl["dataset"])
            text = caption(self.registry, decl["title"], f"{note} {self.note()}", self.results, self.paper_values.get("source", ""))
            return TableContent(frame, text, shown)

        return frame_table(self.registry, name, self.name, [r for rs in cells.values() for r in rs], content)

    def figure(self, name: str, decl: dict[str, Any]) -> Target:
        """Fig. 3, one panel per budget of the setting, on the datasets table 1 runs on (or the setting's)."""
        fig3 = self.settings["fig3"]
        panels = [{"label": f"{b:g}M multiplications", "budget": b, "depths": fig3["depths"]} for b in fig3["budgets"]]
        title = f"{decl['title']} (budgets at the setting's input; paper: 30M and 107M on CIFAR-10, values not retrieved)"
        return figure_target(self.registry, name, {**decl, "title": title, "panels": panels}, self,
                             self.datasets(decl["dataset"]) or list(self.config["datasets"]))

    # -- claims ----------------------------------------------------------------------------------
    def claims(self) -> list[Claim]:
        """Hints train deep thin students where backprop and KD fail (Fig. 3), a FitNet beats its teacher with
        fewer parameters (Tables 1-4), FitNets run faster than the teacher (Table 5)."""
        out: list[Claim] = []
        fig3 = self.settings["fig3"]
        deepest = max(fig3["depths"])
        for ds in self.datasets("cifar10") or list(self.config["datasets"]):
            for budget in fig3["budgets"]:
                stat = lambda method: self.stat(f"{method}:fitnet_depth{deepest}@{budget:g}", ds)  # noqa: E731,B023
                where = f"{deepest} conv layers, {budget:g}M multiplications, {ds}"
                out.append(compare(f"hints train the deepest thin student better than backprop ({where})", stat("fitnet"), stat("scratch")))
                out.append(compare(f"hints train the deepest thin student better than KD ({where})", stat("fitnet"), stat("kd")))
        for table in ("fitnets_table1", "fitnets_table2", "fitnets_table3", "fitnets_table4"):
            decl = self.experiment["tables"][table]
            student = next(parse(r["template"])[1] for r in decl["rows"] if r["algorithm"] == "FitNet")
            for ds in self.datasets(decl["dataset"]):
                hinted = self.stat(f"fitnet:{student}", ds)
                for method, label in (("scratch", "backprop"), ("kd", "KD")):
                    out.append(compare(f"hints train {student} better than {label} ({ds})", hinted, self.stat(f"{method}:{student}", ds)))
                teacher = self.teacher(ds)
                ours, theirs = self.counts(student, ds)["params"], self.counts(teacher, ds)["params"]
                out.append(compare(f"the FitNet ({student}, {human(ours)} params) beats its teacher ({teacher}, {human(theirs)} params) ({ds})",
                                   hinted, self.stat("scratch:teacher", ds)))
        return out + self.speed_claims()

    def claims_inputs(self) -> list[str]:
        return [self.speed_table()]

    def speed_table(self) -> str:
        return str(self.registry.results_dir / "tables" / "fitnets_table5.csv")

    def speed_claims(self) -> list[Claim]:
        """Table 5's speed-ups, as measured when it was rendered."""
        out = []
        for ds in self.datasets("cifar10"):
            statement = f"FitNets run faster than the teacher at inference (measured on this machine, {ds})"
            try:
                frame = pd.read_csv(self.speed_table())
            except FileNotFoundError:
                out.append(Claim(statement, "inconclusive: render fitnets_table5 first", "no speed-ups measured"))
                continue
            frame = frame[(frame.dataset == ds) & (frame.network != "Teacher")]
            faster = frame.speedup > 1
            evidence = ", ".join(f"{n} x{s:.2f}" for n, s in zip(frame.network, frame.speedup))
            judged = "supported" if faster.all() else ("not supported" if not faster.any() else
                                                       f"partly supported ({int(faster.sum())} of {len(frame)} faster)")
            out.append(Claim(statement, judged, f"speed-up over the teacher: {evidence}"))
        return out


def metric_of(stat: Stat, metric: str) -> tuple[float, float, str]:
    """(mean, std, text) of accuracy or misclassification (100 - accuracy)."""
    if not stat.values:
        return math.nan, math.nan, "missing"
    values = stat.values if metric == "accuracy" else [100 - v for v in stat.values]
    shown = Stat(values)
    return shown.mean, shown.std, shown.text()


def human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


# -- Fig. 3 ----------------------------------------------------------------------------------------

LINES = {"backprop": "scratch", "KD": "kd", "hints (FitNet)": "fitnet"}


def depth_templates(panel: dict[str, Any]) -> list[str]:
    return [f"{method}:fitnet_depth{d}@{panel['budget']:g}" for d in panel["depths"] for method in LINES.values()]


@figure_kind("fitnets_depth", depth_templates)
def depth_figure(ax, panel, stat) -> list[dict[str, Any]]:
    """Test accuracy against the number of conv layers at a fixed multiplication budget, one line per method."""
    rows = []
    for label, method in LINES.items():
        stats = [stat(f"{method}:fitnet_depth{d}@{panel['budget']:g}") for d in panel["depths"]]
        errorbar(ax, panel["depths"], stats, label=label)
        rows += [{"method": label, "depth": d, "budget_millions": panel["budget"], "mean": s.mean, "std": s.std, "n": s.n,
                  "ours": s.text()} for d, s in zip(panel["depths"], stats)]
    ax.set_xlabel("conv layers")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(panel["depths"])
    return rows
