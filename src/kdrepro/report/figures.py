"""Declared figures: each kind lays runs out on axes; the numbers behind a figure go to a CSV."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from kdrepro.io import atomic_write  # noqa: E402
from kdrepro.experiments import SNAPSHOT  # noqa: E402
from kdrepro.report.tables import RunResolver, caption, write_table  # noqa: E402

if TYPE_CHECKING:
    from kdrepro.experiments import Registry, Results, Target

# kind -> (chains the figure reads per panel, function drawing one panel and returning its data rows)
FigureKind = tuple[Callable[[dict], list[list[str]]], Callable[..., list[dict[str, Any]]]]
KINDS: dict[str, FigureKind] = {}


def figure_kind(name: str, chains: Callable[[dict], list[list[str]]]):
    def decorator(draw):
        KINDS[name] = (chains, draw)
        return draw

    return decorator


def _errorbar(ax, xs, stats, **style) -> None:
    ax.errorbar(xs, [s.mean for s in stats], yerr=[0 if s.n < 2 else s.std for s in stats], capsize=3, marker="o", **style)


@figure_kind("teacher_size", lambda p: [[t, p["student"]] for t in p["teachers"]] + [[t] for t in p["teachers"]])
def teacher_size(ax, panel, stat) -> list[dict[str, Any]]:
    """The student's accuracy for each teacher, and the teachers' own accuracy (dashed)."""
    teachers = panel["teachers"]
    students = [stat([t, panel["student"]]) for t in teachers]
    own = [stat([t]) for t in teachers]
    _errorbar(ax, teachers, students, label=f"student {panel['student']} distilled")
    _errorbar(ax, teachers, own, color="tab:red", linestyle="--", label="teacher itself")
    ax.set_xlabel("teacher")
    ax.set_ylabel("test accuracy (%)")
    return [{"teacher": t, "student_mean": s.mean, "student_std": s.std, "teacher_mean": o.mean, "teacher_std": o.std, "n": s.n}
            for t, s, o in zip(teachers, students, own)]


@figure_kind("student_size", lambda p: [[p["teacher"], s] for s in p["students"]] + [[s] for s in p["students"]])
def student_size(ax, panel, stat) -> list[dict[str, Any]]:
    """Percentage gain of the distilled student over the same student trained from scratch."""
    rows = []
    for s in panel["students"]:
        distilled, scratch = stat([panel["teacher"], s]), stat([s])
        gains = [100 * (d - c) / c for d, c in zip(distilled.values, scratch.values)]  # paired by seed
        rows.append({"student": s, "gain_mean": sum(gains) / len(gains) if gains else float("nan"),
                     "gain_min": min(gains, default=float("nan")), "gain_max": max(gains, default=float("nan")), "n": len(gains)})
    frame = pd.DataFrame(rows)
    ax.bar(frame["student"], frame["gain_mean"], color="tab:blue")
    ax.errorbar(frame["student"], frame["gain_mean"], yerr=[frame["gain_mean"] - frame["gain_min"], frame["gain_max"] - frame["gain_mean"]],
                fmt="none", ecolor="black", capsize=3)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("student")
    ax.set_ylabel("gain over scratch (%, seed range)")
    return rows


@figure_kind("paths", lambda p: p["chains"])
def paths(ax, panel, stat) -> list[dict[str, Any]]:
    """The student's accuracy for every distillation path, sorted by the number of assistants."""
    rows = [{"path": " → ".join(chain), "assistants": len(chain) - 2, "mean": (s := stat(chain)).mean, "std": s.std, "n": s.n, "ours": s.text()}
            for chain in panel["chains"]]
    frame = pd.DataFrame(rows)
    ax.barh(frame["path"], frame["mean"], xerr=frame["std"].fillna(0), color=[f"C{k}" for k in frame["assistants"]], capsize=3)
    ax.invert_yaxis()
    low = frame["mean"].min() - 3 * max(frame["std"].fillna(0).max(), 0.5)
    ax.set_xlim(left=max(low, 0))
    ax.set_xlabel("student test accuracy (%)")
    return rows


@figure_kind("defective_teacher", lambda p: [f"{kind}:{p['teacher']}@{e}{tail}" for e in p["epochs"]
                                           for kind, tail in (("snapshot", ""), ("dekd", f">{p['student']}"))]
             + [f"scratch:{p['student']}"])
def defective_teacher(ax, panel, stat) -> list[dict[str, Any]]:
    """The De-KD student's accuracy against its poorly trained teacher's; the student's baseline as a line."""
    teacher, student = panel["teacher"], panel["student"]
    rows, seen = [], set()
    for epoch in panel["epochs"]:
        runs = tuple(stat.resolve(f"dekd:{teacher}@{epoch}>{student}"))
        if runs in seen:  # reference epochs that scale to the same epoch of a short run
            continue
        seen.add(runs)
        poor, taught = stat(f"snapshot:{teacher}@{epoch}"), stat(f"dekd:{teacher}@{epoch}>{student}")
        trained_epochs = int(stat.resolve(f"snapshot:{teacher}@{epoch}")[0].rpartition(SNAPSHOT)[2])
        rows.append({"teacher_reference_epoch": epoch, "teacher_epoch": trained_epochs, "teacher_mean": poor.mean,
                     "teacher_std": poor.std, "student_mean": taught.mean, "student_std": taught.std, "n": taught.n})
    rows.sort(key=lambda r: r["teacher_mean"])
    baseline = stat(f"scratch:{student}")
    ax.errorbar([r["teacher_mean"] for r in rows], [r["student_mean"] for r in rows],
                yerr=[0 if r["n"] < 2 else r["student_std"] for r in rows], marker="o", capsize=3, label=f"{student} taught (De-KD)")
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


class PanelData:
    """What a figure kind reads for one dataset: `stat(template)` summarises its runs over seeds,
    `stat.curves(template)` gives their per-epoch test accuracy, `stat.resolve(template)` names them."""

    def __init__(self, results: "Results", resolve: RunResolver, dataset: str):
        self.results, self.dataset, self._resolve = results, dataset, resolve

    def resolve(self, template) -> list[str]:
        return self._resolve(template, self.dataset)

    def __call__(self, template):
        return self.results.stat(self.resolve(template))

    def curves(self, template) -> pd.DataFrame:
        return self.results.curves(self.resolve(template))


def figure_target(registry: "Registry", name: str, decl: dict[str, Any], resolve: RunResolver, context: dict[str, str]) -> "Target":
    from kdrepro.experiments import Results, Target, run_of

    chains_of, draw = KINDS[decl["kind"]]
    panels = decl.get("panels", [decl])
    datasets = registry.config["datasets"]
    runs = sorted({run_of(r) for ds in datasets for p in panels for chain in chains_of(p) for r in resolve(chain, ds)})
    png, pdf = registry.figures_dir / f"{name}.png", registry.figures_dir / f"{name}.pdf"
    data_base = registry.results_dir / "tables" / name

    def render() -> None:
        results = Results(registry, context["paper"])
        fig, axes = plt.subplots(len(datasets), len(panels), figsize=(5.2 * len(panels), 3.8 * len(datasets)), squeeze=False)
        records = []
        for i, ds in enumerate(datasets):
            for j, panel in enumerate(panels):
                ax = axes[i][j]
                for row in draw(ax, panel, PanelData(results, resolve, ds)):
                    records.append({"dataset": ds, "panel": panel.get("label", name), **row})
                ax.set_title(f"{panel.get('label', '')} — {ds}", fontsize=10)
                ax.grid(alpha=0.3)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=8)
        text = caption(registry, decl["title"], "", results)
        heading = [decl["title"], f"setting {registry.setting}: {registry.config.get('description', '')}"]
        width = int(13 * fig.get_figwidth())  # characters of 9-point text that fit across the figure
        fig.suptitle("\n".join(textwrap.fill(line, width) for line in heading), fontsize=9)
        fig.tight_layout()
        for path in (png, pdf):
            atomic_write(path, lambda handle, fmt=path.suffix[1:]: fig.savefig(handle, format=fmt, dpi=150))
        plt.close(fig)
        write_table(pd.DataFrame(records), text, data_base)

    outputs = [str(png), str(pdf)] + [str(data_base.with_suffix(s)) for s in (".csv", ".md", ".tex")]
    return Target(name, context["paper"], "figure", runs, outputs, render)
