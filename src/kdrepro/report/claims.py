"""The claims report: each paper's qualitative claims, judged on our runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from kdrepro.experiments import Registry, Target
from kdrepro.io import save_text
from kdrepro.report.results import Results, Stat


@dataclass
class Claim:
    statement: str
    verdict: str
    evidence: str


class ClaimsSource(Protocol):
    """What a paper hands the claims report."""

    results: Results

    def claims(self) -> list[Claim]:
        """Its claims, each judged on every dataset of the setting."""

    def claims_inputs(self) -> list[str]:
        """The files its claims read besides its runs' metrics (other targets' outputs)."""


def verdict(holds: bool, better: Stat, other: Stat) -> str:
    """supported / not supported, weakened when the gap is inside the seed-to-seed spread."""
    if not better.values or not other.values:
        return "inconclusive: missing runs"
    if not holds:
        return "not supported"
    if min(better.n, other.n) < 2:
        return "supported (one seed: no spread to judge against)"
    gap = better.mean - other.mean
    spread = max(better.std, other.std)
    return "supported" if gap > spread else f"weakly supported (gap {gap:.2f} within one std {spread:.2f})"


def compare(statement: str, better: Stat, other: Stat) -> Claim:
    """The claim that `better` has the higher mean accuracy."""
    return Claim(statement, verdict(better.mean > other.mean, better, other), f"{better.text()} (n={better.n}) vs {other.text()} (n={other.n})")


def claims_target(registry: Registry, papers: Mapping[str, ClaimsSource]) -> Target:
    """results/<setting>/claims.md: every paper's claims, judged on every run of the registry."""
    path = registry.results_dir / "claims.md"

    def render() -> None:
        lines = [
            f"# Claims report, setting `{registry.setting}`",
            "",
            registry.config.get("description", ""),
            "",
            "Mean ± std over each paper's seeds. "
            "A claim is *supported* when the gap exceeds the larger seed-to-seed std, *weakly supported* when it "
            "points the right way inside that spread.",
        ]
        for name, paper in papers.items():
            results = paper.results
            lines += ["", f"## {registry.experiments[name]['paper']}", "",
                      f"Accuracy per run: {results.protocol_text}; seeds {', '.join(map(str, results.seeds))}.", ""]
            lines += ["| claim | verdict | evidence |", "|---|---|---|"]
            lines += [f"| {c.statement} | {c.verdict} | {c.evidence} |" for c in paper.claims()]
        save_text("\n".join(lines) + "\n", path)

    inputs = [file for paper in papers.values() for file in paper.claims_inputs()]
    return Target("claims", "all", "claims", sorted(registry.runs), [str(path)], render, inputs)
