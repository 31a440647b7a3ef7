"""Declared tables: rows x columns of runs, ours beside the paper's, as CSV, Markdown, LaTeX and HTML."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol

import pandas as pd

from kdrepro.experiments import Registry, Target, run_of
from kdrepro.io import save_text
from kdrepro.report.results import Results, not_trained_note, seeds_text


class RunTemplates(Protocol):
    """What a paper hands the report layer: its results and its run templates, resolved per dataset."""

    results: Results
    config: dict[str, Any]  # the setting as the paper runs it: config["datasets"] are the datasets its targets cover

    def register(self, template: Any, dataset: str) -> list[str]:
        """The template's run references, one per seed, registering their runs (while the registry is built)."""

    def runs(self, template: Any, dataset: str) -> list[str]:
        """The same references, looked up without registering anything (when rendering)."""


class TableContent(NamedTuple):
    frame: pd.DataFrame  # every number, written whole as the CSV
    caption: str
    shown: list[str] | None = None  # the frame's columns the Markdown and LaTeX tables show (None: the wide form)


def caption(registry: Registry, title: str, note: str, results: Results, runs: list[str], paper_source: str = "") -> str:
    """`runs`: the runs the target reads, whose seeds the caption gives cell by cell."""
    seeds = seeds_text(registry, runs, results.seeds)
    parts = [
        title + ".",
        note,
        f"Setting `{registry.setting}`: {registry.config.get('description', '')}.",
        f"Ours: {results.protocol_text}, mean ± std over {seeds}.",
    ]
    if paper_source:
        parts.append(f"Paper values: {paper_source}; the tags are explained in docs/protocols.md (UNVERIFIED = not checked against the PDF).")
    return " ".join(p for p in parts if p)


def not_run(registry: Registry, paper: str, dataset: str, datasets: list[str], declared: bool) -> str:
    """Why a table cell has no runs of `dataset`: they are not known yet (a declared cell whose search has not
    finished), the table declares none for the row (a published value only), the setting lacks the dataset, or the
    paper's own dataset list (`datasets`) leaves it out."""
    if declared:
        return "not run yet: its runs are known once the search that chooses them has finished"
    if dataset in datasets:
        return f"not run: no runs are declared for this row (config/experiments/{paper}.yaml)"
    if dataset in registry.config["datasets"]:
        return f"not run: {dataset} is not in {paper}.datasets of setting {registry.setting}"
    return f"not run: {dataset} is not in setting {registry.setting}"


def frame_table(registry: Registry, name: str, paper: str, runs: list[str], content: Callable[[], TableContent]) -> Target:
    """A table target whose frame the paper lays out itself: `content()` reads the runs when it renders. A cell
    that includes a run that did not train carries a mark (Stat.text), which the caption explains."""
    base = registry.results_dir / "tables" / name

    def render() -> None:
        frame, text, shown = content()
        note = not_trained_note(registry, runs)
        write_table(TableContent(frame, f"{text} {note}" if note else text, shown), base)

    outputs = [str(base.with_suffix(s)) for s in TABLE_SUFFIXES]
    return Target(name, paper, "table", sorted({run_of(r) for r in runs}), outputs, render)


def table_target(registry: Registry, name: str, decl: dict[str, Any], paper_values: dict[str, Any],
                 templates: RunTemplates) -> Target:
    """A declared table: a row per (row, dataset) with each column's runs summarised beside the paper's value.
    A row's `model` is the paper's label, which its published values are keyed by; its `label`, where given, is
    what the table shows of our runs (the networks a setting trains in place of the paper's); the rows of the
    paper's datasets that the setting does not run keep the paper's label."""
    datasets = templates.config["datasets"]
    published = paper_values.get(name, {})
    shown = {row["model"]: row.get("label", row["model"]) for row in decl["rows"]}
    cells = {(row["model"], ds, col): templates.register(row["cells"][col], ds)
             for row in decl["rows"] for ds in datasets for col in decl["columns"]}
    read = [r for rs in cells.values() for r in rs]
    results = templates.results

    def content() -> TableContent:
        records = []
        keys = [(row["model"], ds) for row in decl["rows"] for ds in datasets]
        keys += [tuple(k.rsplit("/", 1)) for k in published if tuple(k.rsplit("/", 1)) not in keys]
        for model, ds in keys:
            for col in decl["columns"]:
                value, tag = published.get(f"{model}/{ds}", {}).get(col, [None, ""])
                runs = cells.get((model, ds, col))
                stat = results.stat(runs) if runs else None
                records.append({
                    "model": shown.get(model, model) if ds in datasets else model, "dataset": ds, "column": col,
                    "ours_mean": stat.mean if stat else None, "ours_std": stat.std if stat else None,
                    "n_seeds": stat.n if stat else 0,
                    "ours": stat.text() if stat else not_run(registry, results.paper, ds, datasets, runs is not None),
                    "paper": value, "paper_tag": tag,
                    "runs": " ".join(runs) if runs else "",
                })
        text = caption(registry, decl["title"], decl.get("caption", ""), results, read, paper_values.get("source", ""))
        return TableContent(pd.DataFrame.from_records(records), text)

    return frame_table(registry, name, results.paper, read, content)


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (model, dataset): each column's ours and paper side by side."""
    out = []
    for (model, ds), group in frame.groupby(["model", "dataset"], sort=False):
        line = {"Model": model, "Dataset": ds}
        for rec in group.itertuples():
            line[f"{rec.column}"] = rec.ours
            line[f"{rec.column} (paper)"] = "–" if pd.isna(rec.paper) else f"{rec.paper:.2f}" + (f" [{rec.paper_tag}]" if rec.paper_tag else "")
        out.append(line)
    return pd.DataFrame(out)


TABLE_SUFFIXES = (".csv", ".md", ".tex", ".html")  # the HTML is what `snakemake --report` shows


def write_table(content: TableContent, base: Path) -> None:
    """The long CSV (every number), and as Markdown, LaTeX and HTML with the caption the `shown` columns
    (missing values as "–"), or by default the wide table."""
    frame, text, shown = content
    save_text(frame.to_csv(index=False), base.with_suffix(".csv"))
    if shown:
        table = frame[shown].fillna("–")
    else:
        table = wide(frame) if "column" in frame else frame
    markdown = f"## {base.stem}\n\n{text}\n\n{table.to_markdown(index=False)}\n"
    save_text(markdown, base.with_suffix(".md"))
    latex_table = table.map(lambda v: latex_escape(v) if isinstance(v, str) else v).rename(columns=latex_escape)
    latex = latex_table.to_latex(index=False, caption=latex_escape(text), label=f"tab:{base.stem}")
    save_text(latex, base.with_suffix(".tex"))
    page = f"<h3>{html.escape(base.stem)}</h3>\n<p>{html.escape(text)}</p>\n{table.to_html(index=False, na_rep='–')}\n"
    save_text(page, base.with_suffix(".html"))


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)
