"""The claims report: each paper's qualitative claims, judged on our runs with statistics over seeds.

Three kinds of claim, each judged on the runs that share seeds (a run of seed s is paired with the other
runs of seed s; a run that did not train is left out, and the verdict names it and why):
- a difference ("A beats B"): the mean of the paired differences A - B with its 95% Student-t interval;
  *reproduced* when the interval lies on the paper's side of zero, *contradicted* when it lies on the
  other side, *inconclusive* when it contains zero;
- an equivalence ("A is comparable to B"): two one-sided tests at 5%, i.e. the 90% t interval of the paired
  differences against a stated margin; *equivalent* when the interval lies inside ±margin, *not
  equivalent* when it lies wholly outside, *inconclusive* when it straddles a bound;
- a ranking ("the largest teacher is not the best"): the share of bootstrap resamples of the seeds in which
  the claimed ordering holds of the resampled means; *reproduced* at REPRODUCED_SHARE or more,
  *contradicted* at CONTRADICTED_SHARE or less, *inconclusive* between.
Fewer than MIN_SEEDS paired seeds is always *inconclusive*, whatever the numbers say.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import pandas as pd

from kdrepro.experiments import Registry, Target
from kdrepro.io import atomic_write, save_text
from kdrepro.report.figures import pyplot
from kdrepro.report.results import Results, Stat, seeds_text
from kdrepro.report.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_share, mean_interval
from kdrepro.report.tables import TABLE_SUFFIXES, TableContent, write_table

CONFIDENCE = 0.95  # of a difference's interval
EQUIVALENCE_CONFIDENCE = 0.90  # two one-sided tests at 5% each
MIN_SEEDS = 3
REPRODUCED_SHARE, CONTRADICTED_SHARE = 0.95, 0.05  # of bootstrap resamples in which a claimed ordering holds

DIFFERENCE, EQUIVALENCE, RANKING = "difference", "equivalence", "ranking"


@dataclass(frozen=True)
class Effect:
    """Our effect: a difference in accuracy points with its interval (DIFFERENCE at CONFIDENCE, EQUIVALENCE at
    EQUIVALENCE_CONFIDENCE, with its margin), or for a RANKING the share of resamples in which the ordering holds."""

    kind: str
    estimate: float
    low: float = math.nan
    high: float = math.nan
    margin: float = math.nan

    def text(self) -> str:
        if self.kind == RANKING:
            return f"holds in {100 * self.estimate:.1f}% of resamples"
        if math.isnan(self.low):
            return f"{self.estimate:+.2f}"
        level = CONFIDENCE if self.kind == DIFFERENCE else EQUIVALENCE_CONFIDENCE
        return f"{self.estimate:+.2f} [{self.low:+.2f}, {self.high:+.2f}] ({100 * level:.0f}%)"


@dataclass(frozen=True)
class PaperEffect:
    """The paper's own effect in accuracy points, and where it was measured (the paper's dataset)."""

    value: float
    where: str

    def text(self) -> str:
        return f"{self.value:+.2f} ({self.where})"


@dataclass
class Claim:
    statement: str
    verdict: str
    evidence: str
    effect: Effect | None = None
    paper: PaperEffect | None = None
    n: int = 0  # paired seeds the verdict rests on
    test_images: int | None = None

    @property
    def outcome(self) -> str:
        """The verdict's first word(s), without the reason."""
        return self.verdict.split(":")[0].split(" (")[0].split(";")[0]


class ClaimsSource(Protocol):
    """What a paper hands the claims report."""

    results: Results

    def claims(self) -> list[Claim]:
        """Its claims, each judged on every dataset of the setting."""

    def claims_inputs(self) -> list[str]:
        """The files its claims read besides its runs' metrics (other targets' outputs)."""


# -- pairing ---------------------------------------------------------------------------------------

def paired(stats: Mapping[str, Stat]) -> tuple[dict[str, list[float]], list[str]]:
    """Each stat's values on the seeds where every one of them has a run that trained, and what was left
    out and why (runs that did not train; seeds some stat lacks)."""
    trained = {name: stat.by_seed() for name, stat in stats.items()}
    common = sorted(set.intersection(*(set(values) for values in trained.values())))
    notes = sorted({f"run {run} did not train ({why})" for stat in stats.values() for run, why in stat.not_trained.items()})
    finished = [set(stat.seeds if stat.seeds is not None else range(stat.n)) for stat in stats.values()]
    unpaired = sorted(set().union(*finished) - set.intersection(*finished))  # a run of some cell has not finished
    if unpaired:
        notes.append(f"seed(s) {', '.join(map(str, unpaired))} lack a finished run of some compared cell")
    return {name: [values[seed] for seed in common] for name, values in trained.items()}, notes


def test_images_of(stats: Mapping[str, Stat] | list[Stat]) -> int | None:
    found = [s.test_images for s in (stats.values() if isinstance(stats, Mapping) else stats) if s.test_images]
    return found[0] if found else None


def with_notes(verdict: str, notes: list[str]) -> str:
    return verdict + ("; left out: " + "; ".join(notes) if notes else "")


def too_few(n: int, notes: list[str]) -> str | None:
    """The inconclusive verdict of a claim resting on fewer than MIN_SEEDS paired seeds, or None."""
    if n == 0:
        return with_notes("inconclusive: no seed has a trained run of every compared cell", notes)
    if n < MIN_SEEDS:
        return with_notes(f"inconclusive: {n} paired seed(s), fewer than {MIN_SEEDS}", notes)
    return None


def missing(statement: str, evidence: str, paper: PaperEffect | None) -> Claim:
    return Claim(statement, "inconclusive: missing runs", evidence, paper=paper)


# -- the three kinds of claim ----------------------------------------------------------------------

PAPER_OUTCOMES = ("reproduced", "contradicted")  # a paper's claim
OWN_OUTCOMES = ("holds", "fails")  # a hypothesis of the setting's own (the method comparison): nothing to reproduce


def compare(statement: str, better: Stat, other: Stat, paper: PaperEffect | None = None, evidence: str = "",
            outcomes: tuple[str, str] = PAPER_OUTCOMES) -> Claim:
    """The claim that `better` is more accurate than `other`: the paired differences' mean and 95% t interval
    (`evidence`: what the report shows beside it; by default both cells' summaries); `outcomes` name the
    verdicts of an interval above and below zero."""
    evidence = evidence or f"{better.text()} (n={better.n}) vs {other.text()} (n={other.n})"
    if not better.values or not other.values:
        return missing(statement, evidence, paper)
    columns, notes = paired({"better": better, "other": other})
    diffs = [b - o for b, o in zip(columns["better"], columns["other"])]
    effect = Effect(DIFFERENCE, *mean_interval(diffs, CONFIDENCE)) if diffs else None
    verdict = too_few(len(diffs), notes)
    if verdict is None:
        if effect.low > 0:
            verdict = with_notes(outcomes[0], notes)
        elif effect.high < 0:
            verdict = with_notes(f"{outcomes[1]}: the interval lies below zero", notes)
        else:
            verdict = with_notes(f"inconclusive: the {100 * CONFIDENCE:.0f}% interval contains zero", notes)
    return Claim(statement, verdict, evidence, effect, paper, len(diffs), test_images_of([better, other]))


def equivalence(statement: str, one: Stat, other: Stat, margin: float, paper: PaperEffect | None = None) -> Claim:
    """The claim that `one` and `other` are comparable: the 90% t interval of their paired differences
    (two one-sided tests at 5%) against ±margin points."""
    evidence = f"{one.text()} (n={one.n}) vs {other.text()} (n={other.n}); margin ±{margin:.2f} points"
    if not one.values or not other.values:
        return missing(statement, evidence, paper)
    columns, notes = paired({"one": one, "other": other})
    diffs = [a - b for a, b in zip(columns["one"], columns["other"])]
    effect = Effect(EQUIVALENCE, *mean_interval(diffs, EQUIVALENCE_CONFIDENCE), margin=margin) if diffs else None
    verdict = too_few(len(diffs), notes)
    if verdict is None:
        if -margin <= effect.low and effect.high <= margin:
            verdict = with_notes(f"equivalent: the interval lies inside ±{margin:.2f}", notes)
        elif effect.low > margin or effect.high < -margin:
            verdict = with_notes(f"not equivalent: the interval lies outside ±{margin:.2f}", notes)
        else:
            verdict = with_notes(f"inconclusive: the interval crosses ±{margin:.2f}", notes)
    return Claim(statement, verdict, evidence, effect, paper, len(diffs), test_images_of([one, other]))


def ranking(statement: str, stats: Mapping[str, Stat], holds: Callable[[dict[str, float]], bool], evidence: str,
            paper: PaperEffect | None = None) -> Claim:
    """The claim that an ordering of the stats' means holds (`holds` reads {name: mean}): how often it holds
    over bootstrap resamples of the seeds, every stat resampled on the same seeds."""
    if not all(stat.values for stat in stats.values()):
        return missing(statement, evidence, paper)
    columns, notes = paired(stats)
    n = len(next(iter(columns.values())))
    verdict = too_few(n, notes)
    share = bootstrap_share(columns, holds) if n else math.nan
    if verdict is None:
        if share >= REPRODUCED_SHARE:
            verdict = with_notes("reproduced", notes)
        elif share <= CONTRADICTED_SHARE:
            verdict = with_notes("contradicted: the ordering fails in nearly every resample", notes)
        else:
            verdict = with_notes(f"inconclusive: the ordering holds in {100 * share:.0f}% of resamples", notes)
    effect = Effect(RANKING, share) if n else None
    return Claim(statement, verdict, evidence, effect, paper, n, test_images_of(stats))


# -- the report ------------------------------------------------------------------------------------

LEGEND = (
    f"How to read the verdicts. Each claim is judged on runs that share seeds: a run of seed s is paired with "
    f"the other runs of seed s, and a run that did not train (metrics.json `trained: false`; marked † in the "
    f"tables) is left out, the verdict naming it. A difference (\"A beats B\") is the mean of the paired "
    f"differences A − B with its {100 * CONFIDENCE:.0f}% Student-t interval: *reproduced* when the interval lies "
    f"on the paper's side of zero, *contradicted* when it lies on the other side, *inconclusive* when it "
    f"contains zero. A \"comparable\" claim is an equivalence test (two one-sided tests at 5%): its "
    f"{100 * EQUIVALENCE_CONFIDENCE:.0f}% interval inside ±margin is *equivalent*, wholly outside is *not "
    f"equivalent*, across a bound *inconclusive*. A ranking claim is resampled: {BOOTSTRAP_RESAMPLES} bootstrap "
    f"resamples of the seeds (random seed {BOOTSTRAP_SEED}); the ordering holding in ≥{100 * REPRODUCED_SHARE:.0f}% "
    f"of them is *reproduced*, in ≤{100 * CONTRADICTED_SHARE:.0f}% *contradicted*, else *inconclusive*. Fewer than "
    f"{MIN_SEEDS} paired seeds is always *inconclusive*. The method comparison's claims (a method beats KD) are "
    f"the setting's own hypotheses, not a paper's: *holds* and *fails* stand there for *reproduced* and "
    f"*contradicted*. \"paper\" is the paper's own effect in points where "
    f"its tables give one (on its dataset), \"–\" where they do not; n is the number of paired seeds; "
    f"\"test images\" the size of the test set each accuracy is measured on (one test image is "
    f"100/test images points)."
)


def judged(papers: Mapping[str, ClaimsSource], registry: Registry) -> list[tuple[str, str, list[Claim]]]:
    """Every paper's name, title and claims; a paper without claims (a setting that compares no methods) is left out."""
    every = [(name, registry.experiments[name]["paper"], paper.claims()) for name, paper in papers.items()]
    return [(name, title, claims) for name, title, claims in every if claims]


def claims_inputs(papers: Mapping[str, ClaimsSource]) -> list[str]:
    """The files the papers' claims read besides their runs' metrics."""
    return [file for paper in papers.values() for file in paper.claims_inputs()]


def short_title(title: str) -> str:
    return title.split(",")[0]


def claims_target(registry: Registry, papers: Mapping[str, ClaimsSource], figure: str | None = None) -> Target:
    """results/<setting>/claims.md: a summary (paper x claim x verdict), the forest plot `figure` where one is
    drawn, then every paper's claims with their effects, intervals, n and test-set sizes."""
    path = registry.results_dir / "claims.md"

    def render() -> None:
        every = judged(papers, registry)
        lines = [f"# Claims report, setting `{registry.setting}`", "", registry.config.get("description", ""), "", LEGEND, "",
                 "## Summary", "", "| paper | claim | verdict | ours | paper's effect | n |", "|---|---|---|---|---|---|"]
        lines += [f"| {short_title(title)} | {c.statement} | {c.outcome} | {c.effect.text() if c.effect else '–'} | "
                  f"{c.paper.text() if c.paper else '–'} | {c.n} |" for _, title, claims in every for c in claims]
        if figure:
            lines += ["", f"![each claim's effect with its interval beside the paper's](../../figures/{registry.setting}/{figure}.png)"]
        for name, title, claims in every:
            results = papers[name].results
            read = [run for target in registry.targets.values() if target.paper == name and target.kind in ("table", "figure")
                    for run in target.runs]
            lines += ["", f"## {title}", "", f"Accuracy per run: {results.protocol_text}; {seeds_text(registry, read, results.seeds)}.", ""]
            lines += ["| claim | verdict | ours | paper | n | test images | evidence |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {c.statement} | {c.verdict} | {c.effect.text() if c.effect else '–'} | {c.paper.text() if c.paper else '–'} "
                      f"| {c.n} | {c.test_images or '–'} | {c.evidence} |" for c in claims]
        save_text("\n".join(lines) + "\n", path)

    return Target("claims", "all", "claims", sorted(registry.runs), [str(path)], render, claims_inputs(papers))


# every outcome by what it says of its claim: the papers', the setting's own hypotheses' and the equivalence tests'
OUTCOME_SIDES = {"reproduced": (PAPER_OUTCOMES[0], OWN_OUTCOMES[0], "equivalent"),
                 "contradicted": (PAPER_OUTCOMES[1], OWN_OUTCOMES[1], "not equivalent"), "inconclusive": ("inconclusive",)}
SIDE_COLOURS = {"reproduced": "tab:green", "contradicted": "tab:red", "inconclusive": "tab:grey"}
# a claim without an effect is not drawn
VERDICT_COLOURS = {outcome: SIDE_COLOURS[side] for side, outcomes in OUTCOME_SIDES.items() for outcome in outcomes}


def claims_figure_target(registry: Registry, papers: Mapping[str, ClaimsSource], name: str = "claims_fig") -> Target:
    """figures/<setting>/<name>.{png,pdf}: a forest plot of every claim with an effect: the differences and
    equivalences in points with their intervals beside the paper's effect (top), the rankings as the share
    of resamples in which their ordering holds (bottom); the numbers go to results/<setting>/tables/<name>.*."""
    png, pdf = registry.figures_dir / f"{name}.png", registry.figures_dir / f"{name}.pdf"
    data_base = registry.results_dir / "tables" / name

    def render() -> None:
        rows = [{"paper": short_title(title), "claim": c.statement, "verdict": c.outcome, "kind": c.effect.kind,
                 "estimate": c.effect.estimate, "low": c.effect.low, "high": c.effect.high, "margin": c.effect.margin,
                 "paper_effect": c.paper.value if c.paper else math.nan, "paper_where": c.paper.where if c.paper else "",
                 "n": c.n, "test_images": c.test_images}
                for _, title, claims in judged(papers, registry) for c in claims if c.effect is not None]
        frame = pd.DataFrame(rows, columns=["paper", "claim", "verdict", "kind", "estimate", "low", "high", "margin",
                                            "paper_effect", "paper_where", "n", "test_images"])
        points, ranks = frame[frame.kind != RANKING], frame[frame.kind == RANKING]
        lines = [max(len(points), 1), max(len(ranks), 1)]
        plt = pyplot()
        fig, (left, right) = plt.subplots(2, 1, figsize=(12, 2.5 + 0.3 * sum(lines)), gridspec_kw={"height_ratios": lines})
        forest(left, points)
        left.set_xlabel("effect (accuracy points): ours with its interval, the paper's ◆")
        forest(right, ranks)
        right.set_xlim(-0.02, 1.02)
        for share in (CONTRADICTED_SHARE, REPRODUCED_SHARE):
            right.axvline(share, color="grey", linestyle=":", linewidth=1)
        right.set_xlabel("share of resamples in which the ordering holds")
        handles = [plt.Line2D([], [], color=c, marker="o", linestyle="-", label=v) for v, c in VERDICT_COLOURS.items()
                   if v in set(frame.verdict)] + [plt.Line2D([], [], color="black", marker="D", linestyle="", label="paper")]
        left.legend(handles=handles, fontsize=7, loc="lower right")
        title = (f"Claims, setting {registry.setting}: our effect with its interval beside the paper's "
                 f"({100 * CONFIDENCE:.0f}% t intervals of paired differences; equivalences at {100 * EQUIVALENCE_CONFIDENCE:.0f}%, "
                 f"their margin dashed; rankings bootstrapped over seeds)")
        fig.suptitle("\n".join(textwrap.wrap(title, 130)), fontsize=9)
        fig.tight_layout()
        for path in (png, pdf):
            atomic_write(path, lambda handle, fmt=path.suffix[1:]: fig.savefig(handle, format=fmt, dpi=120))
        plt.close(fig)
        write_table(TableContent(frame, title + ". " + LEGEND), data_base)

    outputs = [str(png), str(pdf)] + [str(data_base.with_suffix(s)) for s in TABLE_SUFFIXES]
    return Target(name, "all", "figure", sorted(registry.runs), outputs, render, claims_inputs(papers))


def forest(ax, frame: pd.DataFrame) -> None:
    """One line per claim, top to bottom: our estimate and interval coloured by verdict, the paper's effect as a
    diamond, an equivalence claim's margin as dashes."""
    ys = list(range(len(frame)))[::-1]
    for y, row in zip(ys, frame.itertuples()):
        colour = VERDICT_COLOURS.get(row.verdict, "tab:grey")
        if not math.isnan(row.low):
            ax.plot([row.low, row.high], [y, y], color=colour, linewidth=2)
        ax.plot([row.estimate], [y], marker="o", color=colour)
        if not math.isnan(row.paper_effect):
            ax.plot([row.paper_effect], [y], marker="D", color="black", markersize=5)
        if not math.isnan(row.margin):
            ax.plot([-row.margin, row.margin], [y, y], linestyle="none", marker="|", markersize=12, color="black")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(ys, [textwrap.shorten(f"{row.paper}: {row.claim}", 90) for row in frame.itertuples()], fontsize=7)
    ax.set_ylim(-1, max(len(frame), 1))
    ax.grid(axis="x", alpha=0.3)
