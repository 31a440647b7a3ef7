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
import platform
import re
import statistics
import time
from dataclasses import replace
from typing import Any

import pandas as pd

from kdrepro.engine.checkpoint import save_text
from kdrepro.experiments import Registry, Results, Stat, Target, paper_seeds
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.models import create_model
from kdrepro.models.maxout import ARCHS, count_layers, count_multiplications, count_weights, hint_layers
from kdrepro.report.claims import Claim, compare
from kdrepro.report.figures import figure_kind, figure_target
from kdrepro.report.tables import caption, latex_escape

PAPER = "fitnets"
METHODS = ("scratch", "kd", "hint", "fitnet")
TEMPLATE = re.compile(r"^(?P<method>[a-z]+):(?P<arch>[a-z0-9_]+)(?:@(?P<budget>[0-9.]+))?$")
OWN_TABLE = ("cifar100", "svhn", "mnist")  # datasets with a table of their own; table 1 takes the others
INPUT_CHANNELS = {"fashion_mnist": 1, "mnist": 1, "cifar10": 3, "cifar100": 3, "svhn": 3}
NATIVE_SIZE = {"fashion_mnist": 28, "mnist": 28, "cifar10": 32, "cifar100": 32, "svhn": 32}
TEST_SIZE = {"fashion_mnist": 10_000, "mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032}
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


class FitNets:
    """Turns templates into run specs for one setting and registers them."""

    def __init__(self, registry: Registry, experiment: dict[str, Any]):
        self.registry, self.experiment = registry, experiment
        self.config = registry.config
        self.settings = self.config["fitnets"]
        self.seeds = paper_seeds(self.config, PAPER)
        self.protocol = experiment["protocols"][self.config["protocol"]]

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

    # -- runs ----------------------------------------------------------------------------------
    def options(self, arch: str, budget: float | None) -> dict[str, Any]:
        rules = self.experiment["layer_rules"]["fitnet_depth" if budget is not None else arch]
        dropout = self.experiment["teacher_recipes"].get(arch, {}).get("dropout", {})
        options: dict[str, Any] = {"init_range": self.settings["init_range"], **rules, **dropout}
        if budget is not None:
            options["budget"] = budget * 1e6
        elif self.settings["width"] != 1:
            options["width"] = self.settings["width"]
        return options

    def arch_tag(self, arch: str, budget: float | None) -> str:
        return arch if budget is None else f"{arch}-b{budget:g}M"

    def run_name(self, method: str, arch: str, budget: float | None, dataset: str, seed: int) -> str:
        trained = self.arch_tag(arch, budget)
        if method != "scratch":
            trained = f"{self.teacher(dataset)}-{trained}"
        return f"fitnets/{dataset}/{method}/{trained}/s{seed}"

    def runs(self, template: str, dataset: str) -> list[str]:
        """The runs (one per seed) behind a template; registers them and the runs they need."""
        method, arch, budget = parse(template)
        arch = self.teacher(dataset) if arch == "teacher" else arch
        names = []
        for seed in self.seeds:
            spec = self.spec(method, arch, budget, dataset, seed)
            names.append(spec.name)
        return names

    def spec(self, method: str, arch: str, budget: float | None, dataset: str, seed: int) -> RunSpec:
        name = self.run_name(method, arch, budget, dataset, seed)
        if name in self.registry.runs:
            return self.registry.runs[name]
        student = Node("student", arch, self.options(arch, budget))
        if method == "scratch":
            is_teacher = arch == self.teacher(dataset)
            epochs = (self.settings["teacher_epochs"] or self.settings["epochs"]) if is_teacher else self.settings["epochs"]
            recipe = self.experiment["teacher_recipes"].get(arch) if is_teacher else None
            spec = self.run_spec(name, dataset, seed, (student,), (Edge(LABELS, "student", "ce"),), epochs, recipe)
        else:
            teacher_arch = self.teacher(dataset)
            teacher_run = self.spec("scratch", teacher_arch, None, dataset, seed).name
            teacher = Node("teacher", teacher_arch, self.options(teacher_arch, None), frozen_from=teacher_run)
            if method == "hint":
                hint = Edge("teacher", "student", "fitnets_hint", options={
                    "source_layer": hint_layers(teacher_arch), "target_layer": hint_layers(arch),
                    "reduction": self.protocol["hint_reduction"], "max_kernel_norm": self.experiment["regressor_max_kernel_norm"]})
                spec = self.run_spec(name, dataset, seed, (teacher, student), (hint,), self.settings["hint_epochs"])
            else:
                if method == "fitnet":
                    stage1 = self.spec("hint", arch, budget, dataset, seed).name
                    student = replace(student, init_from=stage1, init_layers=guided_layers(arch),
                                      init_lr_scale=self.settings["lr_scale"])
                spec = self.run_spec(name, dataset, seed, (teacher, student), self.kd_edges(dataset), self.settings["epochs"])
        self.registry.add_runs({name: spec})
        return spec

    def kd_edges(self, dataset: str) -> tuple[Edge, ...]:
        """CE on the labels plus lambda * the KD term, lambda annealed linearly (TeacherDecayOverEpoch)."""
        recipe = self.recipe(dataset)
        lam, reference = recipe["lambda"], recipe["reference_epochs"]
        decay = {"start": lam["start"], "end": lam["end"], "begin": lam["begin_epoch"] / reference,
                 "until": lam["end_epoch"] / reference}
        loss = "kd" if self.settings["tau_squared"] else "kd_ce"
        kd = Edge("teacher", "student", loss, gate="linear_decay", gate_options=decay,
                  options={"temperature": self.experiment["temperature"]})
        return Edge(LABELS, "student", "ce"), kd

    def run_spec(self, name: str, dataset: str, seed: int, nodes: tuple[Node, ...], edges: tuple[Edge, ...],
                 epochs: int, teacher_recipe: dict[str, Any] | None = None) -> RunSpec:
        """A run of the dataset's student recipe, or of `teacher_recipe` (its own optimiser, schedule and augmentation)."""
        data, recipe = self.config["data"], teacher_recipe or self.recipe(dataset)
        lr = self.settings["teacher_lr" if teacher_recipe else "lr"] or recipe["optimizer"]["lr"]
        augmentation = recipe["augmentation"] if self.settings["augment"] else {}
        return RunSpec(
            name=name,
            data=Data(dataset=dataset, root=data["roots"].get(dataset), download=data["download"],
                      train_subset=self.settings["train_subset"] or data["train_subset"], test_subset=data["test_subset"],
                      validation=0, normalization="dataset", pad_to=data["pad_to"], **augmentation),
            nodes=nodes, edges=edges, epochs=epochs, seed=seed, batch_size=self.settings["batch_size"],
            optimizer=Optimizer(**{**recipe["optimizer"], "lr": lr}),
            schedule=Schedule.from_dict(recipe.get("schedule", {})),
        )

    def note(self) -> str:
        s = self.settings
        return (f"Setting scale: {s['epochs']} epochs (paper 288 on CIFAR), hint stage {s['hint_epochs']} epoch(s), "
                f"maxout widths x{s['width']}, init_range {s['init_range']}, "
                f"{'augmentation as the official code' if s['augment'] else 'no augmentation'}, no GCN/ZCA whitening, the official "
                f"layer rates and max-norm constraints; KD term {'tau^2 KL (Hinton)' if s['tau_squared'] else 'cross-entropy without tau^2 (Eq. 2)'}, "
                f"lambda annealed linearly; lr scale of the stage-1 layers {s['lr_scale']:g}; RMSProp; the CIFAR teacher: the maxout "
                f"paper's recipe (SGD with momentum, linear decay, dropout), {s['teacher_epochs'] or s['epochs']} epochs (paper 474).")


def guided_layers(arch: str) -> tuple[str, ...]:
    """The module paths of layers 0..guided (Algorithm 1's W_Guided)."""
    last = int(hint_layers(arch).rsplit(".h", 1)[1])
    return tuple(f"features.h{i}" for i in range(last + 1))


# -- tables ----------------------------------------------------------------------------------------

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


def write(frame: pd.DataFrame, shown: list[str], text: str, base) -> None:
    """The whole frame as CSV; the `shown` columns as Markdown and LaTeX with the caption."""
    save_text(frame.to_csv(index=False), base.with_suffix(".csv"))
    table = frame[shown].fillna("–")
    save_text(f"## {base.stem}\n\n{text}\n\n{table.to_markdown(index=False)}\n", base.with_suffix(".md"))
    latex = table.map(lambda v: latex_escape(v) if isinstance(v, str) else v).rename(columns=latex_escape)
    save_text(latex.to_latex(index=False, caption=latex_escape(text), label=f"tab:{base.stem}"), base.with_suffix(".tex"))


def model_counts(fit: FitNets, arch: str, dataset: str | None, budget: float | None = None) -> dict[str, float]:
    """Paper-counted weights and multiplications of `arch` as trained on `dataset` (None: at full width
    on a 32x32x3 CIFAR-10 input, the paper's)."""
    if dataset is None:
        if arch not in ARCHS:
            return {}
        mult, params = count_layers(ARCHS[arch], 10, 3, 32)
        return {"params": params, "mult": mult}
    from kdrepro.experiments import num_classes

    channels, size = fit.input_shape(dataset)
    model = create_model(arch, num_classes(dataset, fit.config), channels, size, **fit.options(arch, budget))
    return {"params": count_weights(model), "mult": count_multiplications(model, channels, size)}


def not_run_reason(fit: FitNets, paper_dataset: str) -> str:
    if paper_dataset == "aflw":
        root = fit.config["data"]["roots"].get("aflw")
        return (f"not run: AFLW data configured at {root}, but this package has no AFLW loader or the paper's ReLU networks"
                if root else "not run: AFLW data is not configured (data.roots.aflw)")
    return f"not run: {paper_dataset} is not in setting {fit.registry.setting}"


def accuracy_table(registry: Registry, name: str, decl: dict[str, Any], paper_values: dict[str, Any], fit: FitNets,
                   context: dict[str, str]) -> Target:
    """Tables 1-4 and AFLW: per dataset of ours, every row with ours (params, metric) beside the paper's."""
    from kdrepro.experiments import run_of

    paper_dataset, metric = decl["dataset"], decl["metric"]
    datasets = [] if paper_dataset == "aflw" else fit.datasets(paper_dataset)
    published = paper_values.get(name, {})
    cells = {(row["algorithm"], ds): fit.runs(row["template"], ds) for row in decl["rows"] if row.get("template") for ds in datasets}
    base = registry.results_dir / "tables" / name
    label = "Accuracy" if metric == "accuracy" else "Misclass"

    def render() -> None:
        results = Results(registry, PAPER)
        records = []
        for ds in datasets or [None]:
            for row in decl["rows"]:
                algorithm = row["algorithm"]
                paper = published.get(algorithm, {})
                runs = cells.get((algorithm, ds), [])
                record = {"group": row.get("group", ""), "algorithm": algorithm, "dataset": ds or paper_dataset,
                          "paper_dataset": paper_dataset, "params_ours": None, "ours_mean": None, "ours_std": None, "n_seeds": 0}
                if ds is None:
                    record["ours"] = not_run_reason(fit, paper_dataset)
                elif not runs:
                    record["ours"] = "not reproduced (another method, cited by the paper)"
                else:
                    mean, std, text = metric_of(results.stat(runs), metric)
                    spec = registry.runs[run_of(runs[0])]
                    student = spec.node("student")
                    budget = student.options.get("budget")
                    counts = model_counts(fit, student.arch, ds, budget / 1e6 if budget else None)
                    record.update(params_ours=counts["params"], ours_mean=mean, ours_std=std, n_seeds=results.stat(runs).n, ours=text)
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
        note = decl.get("caption", "")
        if datasets and paper_dataset not in datasets:
            note += f" Ours on {', '.join(datasets)} (the setting's data), the paper's on {paper_dataset}."
        text = caption(registry, decl["title"], f"{note} {fit.note()} # params counted as the paper does (weights only).".strip(),
                       results, paper_values.get("source", ""))
        write(frame, shown, text, base)

    outputs = [str(base.with_suffix(s)) for s in (".csv", ".md", ".tex")]
    runs = sorted({run_of(r) for rs in cells.values() for r in rs})
    return Target(name, PAPER, "table", runs, outputs, render)


def inference_seconds(fit: FitNets, archs: list[str], dataset: str) -> tuple[dict[str, float], str]:
    """Median seconds of one pass over (at most SPEED_IMAGES of) the test split, per network as trained,
    on this machine's CPU with the setting's threads per job; weights do not change the time, so the
    networks are freshly built. Returns the times and a description of the machine."""
    import torch

    from kdrepro.experiments import num_classes

    channels, size = fit.input_shape(dataset)
    n = min(TEST_SIZE.get(dataset, 10_000), fit.config["data"]["test_subset"] or SPEED_IMAGES, SPEED_IMAGES)
    threads = torch.get_num_threads()
    torch.set_num_threads(fit.config["threads_per_job"])
    images = torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(0))
    times = {}
    try:
        with torch.inference_mode():
            for arch in archs:
                model = create_model(arch, num_classes(dataset, fit.config), channels, size, **fit.options(arch, None)).eval()
                model(images[:128])  # warm-up
                passes = []
                for _ in range(SPEED_REPEATS):
                    start = time.perf_counter()
                    for i in range(0, n, 128):
                        model(images[i:i + 128])
                    passes.append(time.perf_counter() - start)
                times[arch] = statistics.median(passes)
    finally:
        torch.set_num_threads(threads)
    machine = (f"CPU ({platform.processor() or platform.machine()}), {fit.config['threads_per_job']} thread(s), "
               f"{n} test images in batches of 128, median of {SPEED_REPEATS} passes")
    return times, machine


def tradeoff_table(registry: Registry, name: str, decl: dict[str, Any], paper_values: dict[str, Any], fit: FitNets,
                   context: dict[str, str]) -> Target:
    """Table 5: layers, parameters and multiplications (the paper's counts), accuracy, measured speed-up and compression."""
    from kdrepro.experiments import run_of
    from kdrepro.models.registry import entry

    datasets = fit.datasets(decl["dataset"])
    published = paper_values.get(name, {})
    cells = {(row["algorithm"], ds): fit.runs(row["template"], ds) for row in decl["rows"] for ds in datasets}
    base = registry.results_dir / "tables" / name

    def render() -> None:
        results = Results(registry, PAPER)
        records = []
        for ds in datasets or [None]:
            archs = {row["algorithm"]: fit.teacher(ds or "cifar10") if row["arch"] == "teacher" else row["arch"] for row in decl["rows"]}
            times, machine = inference_seconds(fit, list(archs.values()), ds) if ds else ({}, "")
            trained = {a: model_counts(fit, arch, ds) for a, arch in archs.items()} if ds else {}
            teacher = archs[decl["rows"][0]["algorithm"]]
            for row in decl["rows"]:
                algorithm, arch = row["algorithm"], archs[row["algorithm"]]
                full = model_counts(fit, arch, None)
                paper = published.get(algorithm, {})
                record = {"network": algorithm, "arch": arch, "dataset": ds or decl["dataset"], "layers": entry(arch).depth,
                          "params_full": full["params"], "mult_full": full["mult"]}
                if ds:
                    runs = cells[(algorithm, ds)]
                    mean, std, text = metric_of(results.stat(runs), "accuracy")
                    record.update(params_trained=trained[algorithm]["params"], mult_trained=trained[algorithm]["mult"],
                                  ours_mean=mean, ours_std=std, n_seeds=results.stat(runs).n, ours=text,
                                  seconds=times[arch], speedup=times[teacher] / times[arch],
                                  compression=trained[algorithm_of(archs, teacher)]["params"] / trained[algorithm]["params"],
                                  machine=machine, runs=" ".join(runs))
                else:
                    record["ours"] = not_run_reason(fit, decl["dataset"])
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
        note = decl.get("caption", "") + measured
        if datasets and decl["dataset"] not in datasets:
            note += f" Ours on {', '.join(datasets)} (the setting's data), the paper's on {decl['dataset']}."
        text = caption(registry, decl["title"], f"{note} {fit.note()}", results, paper_values.get("source", ""))
        write(frame, shown, text, base)

    outputs = [str(base.with_suffix(s)) for s in (".csv", ".md", ".tex")]
    runs = sorted({run_of(r) for rs in cells.values() for r in rs})
    return Target(name, PAPER, "table", runs, outputs, render)


def algorithm_of(archs: dict[str, str], arch: str) -> str:
    return next(a for a, x in archs.items() if x == arch)


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
        ax.errorbar(panel["depths"], [s.mean for s in stats], yerr=[0 if s.n < 2 else s.std for s in stats], marker="o",
                    capsize=3, label=label)
        rows += [{"method": label, "depth": d, "budget_millions": panel["budget"], "mean": s.mean, "std": s.std, "n": s.n,
                  "ours": s.text()} for d, s in zip(panel["depths"], stats)]
    ax.set_xlabel("conv layers")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(panel["depths"])
    return rows


def figure(registry: Registry, name: str, decl: dict[str, Any], fit: FitNets, context: dict[str, str]) -> Target:
    fig3 = fit.settings["fig3"]
    panels = [{"label": f"{b:g}M multiplications", "budget": b, "depths": fig3["depths"]} for b in fig3["budgets"]]
    datasets = fit.datasets(decl["dataset"]) or list(registry.config["datasets"])
    view = replace(registry, config={**registry.config, "datasets": datasets})
    title = f"{decl['title']} (budgets at the setting's input; paper: 30M and 107M on CIFAR-10, values not retrieved)"
    return figure_target(view, name, {**decl, "title": title, "panels": panels}, fit.runs, context)


# -- build and claims -------------------------------------------------------------------------------

def build(registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]) -> None:
    fit = FitNets(registry, experiment)
    context = {"paper": PAPER, "paper_title": experiment["paper"], "report": experiment["report"]}
    for name, decl in experiment["tables"].items():
        maker = tradeoff_table if name == "fitnets_table5" else accuracy_table
        registry.targets[name] = maker(registry, name, decl, paper_values, fit, context)
    for name, decl in experiment["figures"].items():
        registry.targets[name] = figure(registry, name, decl, fit, context)


def claims(results: Results) -> list[Claim]:
    """FitNets' claims: hints train deep thin students where backprop and KD fail (Fig. 3), a FitNet
    beats its teacher with fewer parameters (Tables 1-4), FitNets run faster than the teacher (Table 5)."""
    registry = results.registry
    experiment = registry.experiments[PAPER]
    fit = FitNets(registry, experiment)
    out: list[Claim] = []
    fig3 = fit.settings["fig3"]
    deepest = max(fig3["depths"])
    for ds in fit.datasets("cifar10") or list(registry.config["datasets"]):
        for budget in fig3["budgets"]:
            stat = lambda method: results.stat(fit.runs(f"{method}:fitnet_depth{deepest}@{budget:g}", ds))  # noqa: E731,B023
            where = f"{deepest} conv layers, {budget:g}M multiplications, {ds}"
            out.append(compare(f"hints train the deepest thin student better than backprop ({where})", stat("fitnet"), stat("scratch")))
            out.append(compare(f"hints train the deepest thin student better than KD ({where})", stat("fitnet"), stat("kd")))
    for table in ("fitnets_table1", "fitnets_table2", "fitnets_table3", "fitnets_table4"):
        decl = experiment["tables"][table]
        student = next(parse(r["template"])[1] for r in decl["rows"] if r["algorithm"] == "FitNet")
        for ds in fit.datasets(decl["dataset"]):
            hinted = results.stat(fit.runs(f"fitnet:{student}", ds))
            for method, label in (("scratch", "backprop"), ("kd", "KD")):
                out.append(compare(f"hints train {student} better than {label} ({ds})", hinted, results.stat(fit.runs(f"{method}:{student}", ds))))
            teacher = fit.teacher(ds)
            ours, theirs = model_counts(fit, student, ds)["params"], model_counts(fit, teacher, ds)["params"]
            out.append(compare(f"the FitNet ({student}, {human(ours)} params) beats its teacher ({teacher}, {human(theirs)} params) ({ds})",
                               results.stat(fit.runs(f"fitnet:{student}", ds)), results.stat(fit.runs("scratch:teacher", ds))))
    out += speed_claims(registry, fit, experiment)
    return out


def speed_claims(registry: Registry, fit: FitNets, experiment: dict[str, Any]) -> list[Claim]:
    """Table 5's speed-ups as measured when it was rendered (or measured now if it was not)."""
    path = registry.results_dir / "tables" / "fitnets_table5.csv"
    out = []
    for ds in fit.datasets("cifar10"):
        frame = pd.read_csv(path) if path.exists() else pd.DataFrame()
        frame = frame[frame.dataset == ds] if "speedup" in frame else frame.iloc[0:0]
        if frame.empty:
            archs = [fit.teacher(ds)] + [r["arch"] for r in experiment["tables"]["fitnets_table5"]["rows"][1:]]
            times, _ = inference_seconds(fit, archs, ds)
            frame = pd.DataFrame({"network": archs[1:], "speedup": [times[archs[0]] / times[a] for a in archs[1:]]})
        else:
            frame = frame[frame.network != "Teacher"]
        faster = frame.speedup > 1
        evidence = ", ".join(f"{n} x{s:.2f}" for n, s in zip(frame.network, frame.speedup))
        judged = "supported" if faster.all() else ("not supported" if not faster.any() else
                                                   f"partly supported ({int(faster.sum())} of {len(frame)} faster)")
        out.append(Claim(f"FitNets run faster than the teacher at inference (measured on this machine, {ds})", judged,
                         f"speed-up over the teacher: {evidence}"))
    return out
