"""TAKD (Mirzadeh et al., AAAI 2020): runs are chains of architectures, each link a KD run.

A run template is a chain "teacher-assistant-...-student" (config/experiments/takd.yaml), as a string whose
"{resnet_ta}"-style fields the dataset's size class fills in (`books`), or as a list of architectures.

Every KD link trains at the fixed tau and lambda, or, under `takd.hyper_search`, at the values a search of
its own chose (kdrepro.search's HyperSpace, on a validation split held out of the training data): one
search per chain of two or more networks and dataset, whose teacher is the run its prefix's search chose
(seed: the first), so the searches of a chain run in order. Runs trained with searched values are named
after them, link by link; the tables and figures read them once the searches have finished.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pandas as pd

from kdrepro.experiments import Registry, Search, Target, num_classes
from kdrepro.graph import LABELS, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.catalog import model_info
from kdrepro.papers.base import Paper
from kdrepro.report.claims import Claim, compare, ranking
from kdrepro.report.figures import errorbar, figure_kind, hatch_not_trained
from kdrepro.report.results import Stat
from kdrepro.search_space import Hyper, HyperSpace, SearchDef, SearchError, load_best


def run_name(dataset: str, chain: list[str], seed: int, choices: tuple[Hyper, ...] = ()) -> str:
    """`choices`: the searched values of each link of the chain (none: the fixed values)."""
    searched = "+".join(h.tag for h in choices)
    return f"takd/{dataset}/{'-'.join(chain)}/" + (f"{searched}/" if searched else "") + f"s{seed}"


def path_chains(teacher: str, student: str, assistants: list[str]) -> list[list[str]]:
    """Every path teacher -> (a subset of the assistants, in the given order) -> student."""
    return [[teacher, *subset, student] for k in range(len(assistants) + 1) for subset in combinations(assistants, k)]


class TAKD(Paper):
    name = "takd"

    def __init__(self, registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]):
        super().__init__(registry, experiment, paper_values)
        self.hyper_search: dict[str, Any] | None = self.settings["hyper_search"]
        # (dataset, chain) -> the targets that read its runs, for every chain whose KD links are searched
        self.searched_chains: dict[tuple[str, tuple[str, ...]], set[str]] = {}
        self.reading = ""  # the target being built (its runs are registered then)
        # no schema default: one would enter every setting's validated config, an input of every search
        self.family_seeds: dict[str, list[int]] = self.settings.get("seeds_by_family", {})
        unknown = [f for f in self.family_seeds if f not in self.protocol["families"]]
        if unknown:
            raise SpecError(f"takd.seeds_by_family.{unknown[0]}: no such family; known: {', '.join(self.protocol['families'])}")

    def book(self, dataset: str) -> str:
        """CIFAR-10 rules for datasets of at most 10 classes, CIFAR-100 rules above."""
        return "cifar10" if num_classes(dataset, self.config) <= 10 else "cifar100"

    def chain(self, template: str | list[str], dataset: str) -> list[str]:
        if isinstance(template, str):
            return template.format(**self.experiment["books"][self.book(dataset)]).split("-")
        return list(template)

    def seeds_of(self, template: str | list[str], dataset: str) -> list[int]:
        """`takd.seeds_by_family`'s seeds for the family of the chain's student, else the paper's."""
        return self.family_seeds.get(model_info(self.chain(template, dataset)[-1])["family"], self.seeds)

    def seed_run(self, template: str | list[str], dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]] | None:
        """None while a search that chooses a link's values has not finished."""
        chain = self.chain(template, dataset)
        choices = self.chosen(chain, dataset)
        if choices is None:
            return None
        specs = self.chain_specs(chain, dataset, seed, choices)
        return next(reversed(specs)), specs

    def chosen(self, chain: list[str], dataset: str) -> tuple[Hyper, ...] | None:
        """The searched values of each KD link of `chain` ((): the fixed values, without takd.hyper_search);
        None while one of their searches has not finished."""
        if not self.hyper_search:
            return ()
        found = tuple(load_best(self.registry.search_dir(self.study(dataset, chain[:k])) / "best.json", HyperSpace)
                      for k in range(2, len(chain) + 1))
        return None if None in found else found

    def chain_specs(self, chain: list[str], dataset: str, seed: int, choices: tuple[Hyper, ...] = ()) -> dict[str, RunSpec]:
        """The run of `chain` and, recursively, of every prefix it needs as a teacher; `choices`: each
        link's searched values (none: every link at the fixed values)."""
        specs: dict[str, RunSpec] = {}
        teacher_run = None
        if len(chain) > 1:
            specs = self.chain_specs(chain[:-1], dataset, seed, choices[:-1])
            teacher_run = next(reversed(specs))
        name = run_name(dataset, chain, seed, choices)
        specs[name] = self.link_spec(name, chain, dataset, seed, teacher_run, choices[-1] if choices else None)
        return specs

    def link_spec(self, name: str, chain: list[str], dataset: str, seed: int, teacher_run: str | None,
                  hyper: Hyper | None, validation: int | None = None) -> RunSpec:
        """The last link of `chain`: its student trained with CE alone, or distilled from `teacher_run` at
        `hyper` (None: the fixed tau and lambda); `validation` images held out (a search trial's)."""
        student = chain[-1]
        family = model_info(student)["family"]
        if family not in self.protocol["families"]:
            raise SpecError(f"takd: no training recipe for the {family!r} family of {student} "
                            f"(add one under protocols.{self.config['protocol']}.families in config/experiments/takd.yaml)")
        recipe = self.protocol["families"][family]
        nodes = [Node("student", student, self.options(student))]
        edges = [Edge(LABELS, "student", "ce")]
        if teacher_run is not None:
            nodes.insert(0, Node("teacher", chain[-2], self.options(chain[-2]), frozen_from=teacher_run))
            hyper = hyper or Hyper(self.hyper("temperature"), self.hyper("lambda"))
            kd_options = {"temperature": hyper.temperature, **self.protocol["kd"]}
            edges = [Edge(LABELS, "student", "ce", weight=1 - hyper.weight),
                     Edge("teacher", "student", "kd", weight=hyper.weight, options=kd_options)]
        held_out = {} if validation is None else {"validation": validation}
        return RunSpec(
            name=name,
            data=self.data(dataset, normalization=self.protocol["normalization"], **held_out),
            nodes=tuple(nodes),
            edges=tuple(edges),
            epochs=self.settings["epochs"],
            seed=seed,
            batch_size=self.settings["batch_size"],
            optimizer=Optimizer(**recipe["optimizer"]),
            schedule=Schedule(**{**recipe["schedule"], "milestones": tuple(recipe["schedule"].get("milestones", ()))}),
        )

    # -- searches (takd.hyper_search) --------------------------------------------------------------
    def study(self, dataset: str, chain: list[str]) -> str:
        return f"takd_{dataset}_{'_'.join(chain)}"

    def space(self) -> HyperSpace:
        search = self.hyper_search
        return HyperSpace(tuple(search["tau"]), tuple(search["lambda"]), search["lambda_step"])

    def search(self, dataset: str, chain: list[str], readers: list[str]) -> Search:
        """The search of the last link's tau and lambda: trials distil from the run its prefix's search
        chose (the first seed), on the training images less `validation` held out, and are judged on those."""
        name, settings = self.study(dataset, chain), self.hyper_search

        def teacher() -> str:
            found = self.seed_run(chain[:-1], dataset, self.seeds_of(chain[:-1], dataset)[0])
            if found is None:
                raise SearchError(f"search {name}: its teacher is the run search {self.study(dataset, chain[:-1])} "
                                  "chooses, and that search has not finished")
            return found[0]

        def make_spec(hyper: Hyper, seed: int, run: str) -> RunSpec:
            return self.link_spec(run, chain, dataset, seed, teacher(), hyper, validation=settings["validation"])

        study = SearchDef(name=name, directory=self.registry.search_dir(name), space=self.space(), trials=settings["trials"],
                          workers=1, seed=settings["seed"], objective="validation", make_spec=make_spec, eval_node="student")
        return Search(study, lambda: [teacher()], result_runs=lambda: self.lookup(chain, dataset), readers=readers,
                      after=[self.study(dataset, chain[:k]) for k in range(2, len(chain))])

    def register(self, template: str | list[str], dataset: str) -> list[str]:
        """Also notes, under takd.hyper_search, the searches the target being built reads (and those of the
        prefixes its runs distil from)."""
        chain = self.chain(template, dataset)
        if self.hyper_search and len(chain) > 1:
            for k in range(2, len(chain) + 1):
                self.searched_chains.setdefault((dataset, tuple(chain[:k])), set())
            self.searched_chains[(dataset, tuple(chain))].add(self.reading)
        return super().register(template, dataset)

    def build(self) -> None:
        super().build()
        for (dataset, chain), readers in self.searched_chains.items():
            self.registry.add_search(self.search(dataset, list(chain), sorted(readers)))

    # -- targets -----------------------------------------------------------------------------------
    def note(self) -> str:
        """The caption sentence saying which tau and lambda the KD runs trained with."""
        search = self.hyper_search
        if not search:
            return (f"KD runs: tau {self.hyper('temperature'):g}, lambda {self.hyper('lambda'):g} fixed "
                    "(the paper tuned both per run with NNI and does not publish the values).")
        return (f"KD runs: tau/lambda searched per run ({search['trials']} Optuna trials on a "
                f"{search['validation']}-image held-out split; {self.space().describe()}); each run's name gives the values chosen.")

    def table(self, name: str, decl: dict[str, Any]) -> Target:
        self.reading = name
        return super().table(name, {**decl, "caption": f"{decl.get('caption', '')} {self.note()}".strip()})

    def figure(self, name: str, decl: dict[str, Any]) -> Target:
        self.reading = name
        if decl["kind"] == "paths":
            decl = {**decl, "chains": path_chains(decl["teacher"], decl["student"], decl["assistants"])}
        return super().figure(name, {**decl, "caption": self.note()})

    def claims(self) -> list[Claim]:
        experiment, stat = self.experiment, self.stat
        out: list[Claim] = []
        for dataset in self.config["datasets"]:
            for row in experiment["tables"]["takd_table1"]["rows"]:
                cells, model = row["cells"], row["model"]
                for better, other in (("BLKD", "NOKD"), ("TAKD", "BLKD")):
                    out.append(compare(f"{better} beats {other} ({model}, {dataset})", stat(cells[better], dataset), stat(cells[other], dataset),
                                       self.published_gap("takd_table1", (model, better), (model, other))))
            for panel in experiment["figures"]["takd_fig2"]["panels"]:
                students = {t: stat([t, panel["student"]], dataset) for t in panel["teachers"]}
                largest = panel["teachers"][-1]
                out.append(ranking(
                    f"the largest teacher is not the best teacher ({panel['label']}, {dataset})", students,
                    lambda means, largest=largest: max(means, key=means.get) != largest,
                    "student by teacher: " + ", ".join(f"{t}: {s.text()}" for t, s in students.items()),
                ))
            for table in ("takd_table2", "takd_table3"):
                out.append(ta_midpoint_claim(experiment["tables"][table], dataset, stat))
            paths = experiment["figures"]["takd_paths"]
            by_length: dict[int, list[float]] = {}
            for chain in path_chains(paths["teacher"], paths["student"], paths["assistants"]):
                by_length.setdefault(len(chain) - 2, []).extend(stat(chain, dataset).values)
            means = {k: sum(v) / len(v) for k, v in sorted(by_length.items()) if v}
            direct, longest = stat([paths["teacher"], paths["student"]], dataset), stat([paths["teacher"], *paths["assistants"], paths["student"]], dataset)
            out.append(compare(f"longer distillation paths help: the longest path beats the direct one ({dataset})", longest, direct,
                               evidence="mean student accuracy by number of TAs: " + ", ".join(f"{k}: {m:.2f}" for k, m in means.items())
                               + f"; longest path {longest.text()} vs direct {direct.text()}"))
        return out


def ta_midpoint_claim(table: dict[str, Any], dataset: str, stat) -> Claim:
    """The best TA is the one whose own accuracy lies nearest the teacher/student accuracy midpoint (and that
    is not the TA nearest the size midpoint): how often, over bootstrap resamples of the seeds, the TA whose
    distilled student is best is the one the resampled accuracies put nearest the accuracy midpoint."""
    cells = table["rows"][0]["cells"]
    chains_by_ta = {col: tpl.split("-") for col, tpl in cells.items()}
    teacher, student = next(iter(chains_by_ta.values()))[0], next(iter(chains_by_ta.values()))[-1]
    size_mid = (model_info(teacher)["depth"] + model_info(student)["depth"]) / 2
    ta_size = {col: model_info(chain[1])["depth"] for col, chain in chains_by_ta.items()}
    by_size = min(ta_size, key=lambda c: abs(ta_size[c] - size_mid))
    stats = {"teacher": stat(teacher, dataset), "student": stat(student, dataset)}
    # a TA's accuracy is that of the TA the student learns from: the TA distilled from the teacher
    stats |= {f"TA {col}": stat("-".join(chain[:2]), dataset) for col, chain in chains_by_ta.items()}
    stats |= {f"student {col}": stat(tpl, dataset) for col, tpl in cells.items()}

    def nearest_accuracy_midpoint(means: dict[str, float]) -> str:
        middle = (means["teacher"] + means["student"]) / 2
        return min(cells, key=lambda c: abs(means[f"TA {c}"] - middle))

    def holds(means: dict[str, float]) -> bool:
        best = max(cells, key=lambda c: means[f"student {c}"])
        return best == nearest_accuracy_midpoint(means) != by_size

    means = {name: s.mean for name, s in stats.items()}
    by_acc = nearest_accuracy_midpoint(means) if all(s.values for s in stats.values()) else "–"
    claim = ranking(
        f"the best TA sits near the accuracy midpoint, not the size midpoint ({table['rows'][0]['model']}, {dataset})", stats, holds,
        "students by TA: " + ", ".join(f"{c}: {stats['student ' + c].text()}" for c in cells) + "; on the means the TA nearest the "
        f"accuracy midpoint is {by_acc}, nearest the size midpoint {size_mid:g}: {by_size}",
    )
    if by_acc == by_size:  # the two readings agree here: the claim cannot tell them apart
        claim.verdict = "inconclusive: the accuracy and the size midpoint pick the same TA"
    return claim


# -- figure kinds ------------------------------------------------------------------------------------

@figure_kind("teacher_size", lambda p: [[t, p["student"]] for t in p["teachers"]] + [[t] for t in p["teachers"]])
def teacher_size(ax, panel, stat) -> list[dict[str, Any]]:
    """The student's accuracy for each teacher, and the teachers' own accuracy (dashed)."""
    teachers = panel["teachers"]
    students = [stat([t, panel["student"]]) for t in teachers]
    own = [stat([t]) for t in teachers]
    errorbar(ax, teachers, students, label=f"student {panel['student']} distilled")
    errorbar(ax, teachers, own, color="tab:red", linestyle="--", label="teacher itself")
    ax.set_xlabel("teacher")
    ax.set_ylabel("test accuracy (%)")
    return [{"teacher": t, "student_mean": s.mean, "student_std": s.std, "teacher_mean": o.mean, "teacher_std": o.std, "n": s.n}
            for t, s, o in zip(teachers, students, own)]


@figure_kind("student_size", lambda p: [[p["teacher"], s] for s in p["students"]] + [[s] for s in p["students"]])
def student_size(ax, panel, stat) -> list[dict[str, Any]]:
    """Percentage gain of the distilled student over the same student trained from scratch."""
    rows, flagged = [], []
    for s in panel["students"]:
        distilled, scratch = stat([panel["teacher"], s]), stat([s])
        gains = [100 * (d - c) / c for d, c in zip(distilled.values, scratch.values)]  # paired by seed
        rows.append({"student": s, "gain_mean": sum(gains) / len(gains) if gains else float("nan"),
                     "gain_min": min(gains, default=float("nan")), "gain_max": max(gains, default=float("nan")), "n": len(gains)})
        flagged.append(Stat([], not_trained={**distilled.not_trained, **scratch.not_trained}))
    frame = pd.DataFrame(rows)
    hatch_not_trained(ax, ax.bar(frame["student"], frame["gain_mean"], color="tab:blue"), flagged)
    ax.errorbar(frame["student"], frame["gain_mean"], yerr=[frame["gain_mean"] - frame["gain_min"], frame["gain_max"] - frame["gain_mean"]],
                fmt="none", ecolor="black", capsize=3)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("student")
    ax.set_ylabel("gain over scratch (%, seed range)")
    return rows


@figure_kind("ta_size", lambda p: [[p["teacher"]], [p["student"]]] + [[p["teacher"], ta] for ta in p["assistants"]]
             + [[p["teacher"], ta, p["student"]] for ta in p["assistants"]])
def ta_size(ax, panel, stat) -> list[dict[str, Any]]:
    """Each TA's accuracy (distilled from the teacher, as TAKD trains it) against its depth, with the teacher's and
    the student's own accuracy and their midpoint (the "accuracy midpoint" the best TA sits near), the size midpoint,
    and the student distilled through each TA."""
    teacher, student, assistants = panel["teacher"], panel["student"], panel["assistants"]
    depths = [model_info(ta)["depth"] for ta in assistants]
    own = [stat([teacher, ta]) for ta in assistants]
    through = [stat([teacher, ta, student]) for ta in assistants]
    t, s = stat([teacher]), stat([student])
    accuracy_mid = (t.mean + s.mean) / 2
    size_mid = (model_info(teacher)["depth"] + model_info(student)["depth"]) / 2
    errorbar(ax, depths, own, color="tab:blue", label="TA, distilled from the teacher")
    errorbar(ax, depths, through, color="tab:green", linestyle="--", label=f"student {student} through the TA")
    ax.axhline(t.mean, color="tab:red", linewidth=1, label=f"teacher {teacher}")
    ax.axhline(s.mean, color="grey", linewidth=1, label=f"student {student} alone")
    ax.axhline(accuracy_mid, color="black", linestyle=":", linewidth=1, label="accuracy midpoint")
    ax.axvline(size_mid, color="black", linestyle="-.", linewidth=0.8, label="size midpoint")
    ax.set_xlabel("TA depth (layers)")
    ax.set_ylabel("test accuracy (%)")
    return [{"assistant": ta, "depth": d, "ta_mean": o.mean, "ta_std": o.std, "student_through_ta_mean": v.mean,
             "student_through_ta_std": v.std, "teacher_mean": t.mean, "student_alone_mean": s.mean,
             "accuracy_midpoint": accuracy_mid, "size_midpoint": size_mid, "n": o.n}
            for ta, d, o, v in zip(assistants, depths, own, through)]


@figure_kind("paths", lambda p: p["chains"])
def paths(ax, panel, stat) -> list[dict[str, Any]]:
    """The student's accuracy for every distillation path, sorted by the number of assistants."""
    stats = [stat(chain) for chain in panel["chains"]]
    rows = [{"path": " → ".join(chain), "assistants": len(chain) - 2, "mean": s.mean, "std": s.std, "n": s.n, "ours": s.text()}
            for chain, s in zip(panel["chains"], stats)]
    frame = pd.DataFrame(rows)
    bars = ax.barh(frame["path"], frame["mean"], xerr=frame["std"].fillna(0), color=[f"C{k}" for k in frame["assistants"]], capsize=3)
    hatch_not_trained(ax, bars, stats)
    ax.invert_yaxis()
    if frame["mean"].notna().any():  # no finished run yet: matplotlib's default limits
        low = frame["mean"].min() - 3 * max(frame["std"].fillna(0).max(), 0.5)
        ax.set_xlim(left=max(low, 0))
    ax.set_xlabel("student test accuracy (%)")
    return rows


