"""Declared figures: each kind lays runs out on axes; the numbers behind a figure go to a CSV.

A paper module registers its own kinds with `figure_kind`; an experiment file's figure names one as `kind`.
"""

from __future__ import annotations

import textwrap
from types import ModuleType
from typing import Any, Callable

import pandas as pd

from kdrepro.experiments import Registry, Target, run_of
from kdrepro.io import atomic_write
from kdrepro.report.results import NOT_TRAINED_MARK, Stat, not_trained_note
from kdrepro.report.tables import TABLE_SUFFIXES, RunTemplates, TableContent, caption, write_table

# kind -> (chains the figure reads per panel, function drawing one panel and returning its data rows)
FigureKind = tuple[Callable[[dict], list[list[str]]], Callable[..., list[dict[str, Any]]]]
KINDS: dict[str, FigureKind] = {}


def figure_kind(name: str, chains: Callable[[dict], list[list[str]]]):
    def decorator(draw):
        KINDS[name] = (chains, draw)
        return draw

    return decorator


NOT_TRAINED_LABEL = f"{NOT_TRAINED_MARK} includes a run that did not train"


def pyplot() -> ModuleType:
    """matplotlib's pyplot on its file-only backend (Agg), for the figures' render functions. Imported when a
    figure is first drawn, not with this module: every Snakemake parse and every reading command builds the
    registry, which declares the figures but draws none, and importing pyplot took 0.5 s of each (issue 18)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def errorbar(ax, xs, stats: list[Stat], **style) -> None:
    """Means over seeds with their std as error bars (none for a single seed), marking any that include a run
    that did not train."""
    ax.errorbar(xs, [s.mean for s in stats], yerr=[0 if s.n < 2 else s.std for s in stats], capsize=3, marker="o", **style)
    mark_not_trained(ax, xs, [s.mean for s in stats], stats)


def mark_not_trained(ax, xs, ys, stats: list[Stat]) -> None:
    """Circles in red each point whose stat includes a run that did not train, with one legend entry per panel."""
    flagged = [(x, y) for x, y, s in zip(xs, ys, stats) if s.not_trained]
    if flagged:
        labelled = NOT_TRAINED_LABEL in ax.get_legend_handles_labels()[1]
        ax.scatter(*zip(*flagged), s=160, facecolors="none", edgecolors="red", linewidths=1.6, zorder=5,
                   label=None if labelled else NOT_TRAINED_LABEL)


def hatch_not_trained(ax, bars, stats: list[Stat]) -> None:
    """Hatches in red each bar whose stat includes a run that did not train, with one legend entry per panel."""
    for bar, stat in zip(bars, stats):
        if stat.not_trained:
            bar.set_hatch("//")
            bar.set_edgecolor("red")
            if NOT_TRAINED_LABEL not in ax.get_legend_handles_labels()[1]:
                bar.set_label(NOT_TRAINED_LABEL)


class PanelData:
    """What a figure kind reads for one dataset: `stat(template)` summarises its runs over seeds,
    `stat.curves(template)` gives their per-epoch test accuracy, `stat.resolve(template)` names them."""

    def __init__(self, templates: RunTemplates, dataset: str):
        self.results, self.dataset, self.templates = templates.results, dataset, templates

    def resolve(self, template) -> list[str]:
        return self.templates.runs(template, self.dataset)

    def __call__(self, template):
        return self.results.stat(self.resolve(template))

    def curves(self, template) -> pd.DataFrame:
        return self.results.curves(self.resolve(template))


def figure_target(registry: Registry, name: str, decl: dict[str, Any], templates: RunTemplates,
                  datasets: list[str] | None = None) -> Target:
    """A figure of panels (columns) per dataset (rows; default: the datasets the paper runs on)."""
    chains_of, draw = KINDS[decl["kind"]]
    panels = decl.get("panels", [decl])
    datasets = datasets or templates.config["datasets"]
    runs = sorted({run_of(r) for ds in datasets for p in panels for chain in chains_of(p) for r in templates.register(chain, ds)})
    png, pdf = registry.figures_dir / f"{name}.png", registry.figures_dir / f"{name}.pdf"
    data_base = registry.results_dir / "tables" / name
    results = templates.results

    def render() -> None:
        plt = pyplot()
        fig, axes = plt.subplots(len(datasets), len(panels), figsize=(5.2 * len(panels), 3.8 * len(datasets)), squeeze=False)
        records = []
        for i, ds in enumerate(datasets):
            for j, panel in enumerate(panels):
                ax = axes[i][j]
                for row in draw(ax, panel, PanelData(templates, ds)):
                    records.append({"dataset": ds, "panel": panel.get("label", name), **row})
                ax.set_title(f"{panel.get('label', '')} — {ds}", fontsize=10)
                ax.grid(alpha=0.3)
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=8)
        note = not_trained_note(registry, runs)
        text = caption(registry, decl["title"], " ".join(filter(None, [decl.get("caption", ""), note])), results, runs)
        heading = [decl["title"], f"setting {registry.setting}: {registry.config.get('description', '')}"]
        if note:  # the runs and reasons are in the caption of the figure's numbers; the figure says where
            heading.append(f"{NOT_TRAINED_MARK} red circles: a run that did not train, named with the reason in {data_base.with_suffix('.md')}")
        width = int(13 * fig.get_figwidth())  # characters of 9-point text that fit across the figure
        fig.suptitle("\n".join(textwrap.fill(line, width) for line in heading), fontsize=9)
        fig.tight_layout()
        for path in (png, pdf):
            atomic_write(path, lambda handle, fmt=path.suffix[1:]: fig.savefig(handle, format=fmt, dpi=150))
        plt.close(fig)
        write_table(TableContent(pd.DataFrame(records), text), data_base)

    outputs = [str(png), str(pdf)] + [str(data_base.with_suffix(s)) for s in TABLE_SUFFIXES]
    return Target(name, results.paper, "figure", runs, outputs, render)
