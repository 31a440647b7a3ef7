"""The README's opening summary of a setting's claims report: per paper, how many claims reproduce, are
contradicted or stay inconclusive, and which. It is made from the committed claims.md (its Summary table), never
typed in, and a test checks that the README's copy is what the committed report gives.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

from kdrepro.report.claims import OUTCOME_SIDES
from kdrepro.report.convergence import CONVERGED, NOT_CONVERGED, factor_of

# the digest's columns: each outcome counted with those that say the same of their claim (report.claims)
COLUMNS = OUTCOME_SIDES


def marker(setting: str, end: bool = False) -> str:
    return f"<!-- claims digest {setting} {'end' if end else 'start'} -->"


def summary_rows(claims_md: str) -> list[dict[str, str]]:
    """The rows of claims.md's Summary table: paper, claim, verdict, ours, paper's effect, n."""
    section = claims_md.split("## Summary", 1)[1].lstrip("\n")
    rows = []
    for line in section.splitlines()[2:]:  # after the header and its rule
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows.append(dict(zip(["paper", "claim", "verdict", "ours", "paper_effect", "n"], cells)))
    return rows


def column(verdict: str) -> str:
    for name, outcomes in COLUMNS.items():
        if verdict in outcomes:
            return name
    raise ValueError(f"unknown verdict {verdict!r} in the claims summary")


def convergence_sentence(convergence_csv: str) -> str:
    """How many scratch recipes the convergence check (report.convergence) found converged, and what that means."""
    table = csv.DictReader(io.StringIO(convergence_csv))
    verdicts = Counter(row["verdict"] for row in table)
    return (f"Convergence check (`convergence_table`): {verdicts[CONVERGED]} of {verdicts[CONVERGED] + verdicts[NOT_CONVERGED]} "
            f"scratch recipes change by less than its threshold when trained {factor_of(table.fieldnames)}x as long; where "
            "they do not, a verdict is about this budget, not about the paper's.")


def digest(setting: str, claims_md: str, convergence_csv: str | None = None) -> str:
    """The README block for `setting`, between its markers; the setting's description is the report's second
    paragraph; `convergence_csv`, the setting's convergence_table.csv where it has one."""
    description = claims_md.split("\n\n")[1].strip()
    rows = summary_rows(claims_md)
    counts = Counter((row["paper"], column(row["verdict"])) for row in rows)
    papers = list(dict.fromkeys(row["paper"] for row in rows))
    lines = [marker(setting),
             f"**What reproduces on a CPU** (setting `{setting}`: {description}; made from "
             f"[results/{setting}/claims.md](results/{setting}/claims.md) by `python workflow/scripts/readme_digest.py "
             f"{setting}`; the full report gives each claim's effect with its 95% interval):", "",
             "| paper | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {paper} | " + " | ".join(str(counts[paper, name]) for name in COLUMNS) + " |" for paper in papers]
    if convergence_csv is not None:
        lines += ["", convergence_sentence(convergence_csv)]
    for name in ("reproduced", "contradicted"):
        chosen = [row for row in rows if column(row["verdict"]) == name]
        if chosen:
            lines += ["", f"{name.capitalize()}:", ""]
            lines += [f"- {row['claim']} ({row['paper']}; ours {row['ours']}, paper {row['paper_effect']}, n {row['n']})"
                      for row in chosen]
    return "\n".join([*lines, marker(setting, end=True)])


def update_readme(readme: Path, setting: str, claims_md: str, convergence_csv: str | None = None) -> str:
    """README text with the setting's digest in place of its previous one, or after the first paragraph
    that follows the title where it has none."""
    text = readme.read_text()
    block = digest(setting, claims_md, convergence_csv)
    pattern = re.compile(re.escape(marker(setting)) + r".*?" + re.escape(marker(setting, end=True)), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    title, rest = text.split("\n\n", 1)
    first, after = rest.split("\n\n", 1)
    return f"{title}\n\n{first}\n\n{block}\n\n{after}"
