"""TAKD (Mirzadeh et al., AAAI 2020): runs are chains of architectures, each link a KD run.

A run template is a chain "teacher-assistant-...-student" (config/experiments/takd.yaml), as a string whose
"{resnet_ta}"-style fields the dataset's size class fills in (`books`), or as a list of architectures.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pandas as pd

from kdrepro.experiments import Target, num_classes
from kdrepro.graph import LABELS, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.catalog import model_info
from kdrepro.papers.base import Paper
from kdrepro.report.claims import Claim, compare, verdict
from kdrepro.report.figures import errorbar, figure_kind


def run_name(dataset: str, chain: list[str], seed: int) -> str:
    return f"takd/{dataset}/{'-'.join(chain)}/s{seed}"


def path_chains(teacher: str, student: str, assistants: list[str]) -> list[list[str]]:
    """Every path teacher -> (a subset of the assistants, in the given order) -> student."""
    return [[teacher, *subset, student] for k in range(len(assistants) + 1) for subset in combinations(assistants, k)]


class TAKD(Paper):
    name = "takd"

    def book(self, dataset: str) -> str:
        """CIFAR-10 rules for datasets of at most 10 classes, CIFAR-100 rules above."""
        return "cifar10" if num_classes(dataset, self.config) <= 10 else "cifar100"

    def chain(self, template: str | list[str], dataset: str) -> list[str]:
        if isinstance(template, str):
            return template.format(**self.experiment["books"][self.book(dataset)]).split("-")
        return list(template)

    def seed_run(self, template: str | list[str], dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        chain = self.chain(template, dataset)
        return run_name(dataset, chain, seed), self.chain_specs(chain, dataset, seed)

    def chain_specs(self, chain: list[str], dataset: str, seed: int) -> dict[str, RunSpec]:
        """The run of `chain` and, recursively, of every prefix it needs as a teacher."""
        student = chain[-1]
        family = model_info(student)["family"]
        if family not in self.protocol["families"]:
            raise SpecError(f"takd: no training recipe for the {family!r} family of {student} "
                            f"(add one under protocols.{self.config['protocol']}.families in config/experiments/takd.yaml)")
        recipe = self.protocol["families"][family]
        nodes = [Node("student", student, self.options(student))]
        edges = [Edge(LABELS, "student", "ce")]
        specs: dict[str, RunSpec] = {}
        if len(chain) > 1:
            teacher_run = run_name(dataset, chain[:-1], seed)
            specs.update(self.chain_specs(chain[:-1], dataset, seed))
            nodes.insert(0, Node("teacher", chain[-2], self.options(chain[-2]), frozen_from=teacher_run))
            lam = self.hyper("lambda")
            kd_options = {"temperature": self.hyper("temperature"), **self.protocol["kd"]}
            edges = [Edge(LABELS, "student", "ce", weight=1 - lam), Edge("teacher", "student", "kd", weight=lam, options=kd_options)]
        name = run_name(dataset, chain, seed)
        specs[name] = RunSpec(
            name=name,
            data=self.data(dataset, normalization=self.protocol["normalization"]),
            nodes=tuple(nodes),
            edges=tuple(edges),
            epochs=self.settings["epochs"],
            seed=seed,
            batch_size=self.settings["batch_size"],
            optimizer=Optimizer(**recipe["optimizer"]),
            schedule=Schedule(**{**recipe["schedule"], "milestones": tuple(recipe["schedule"].get("milestones", ()))}),
        )
        return specs

    def figure(self, name: str, decl: dict[str, Any]) -> Target:
        if decl["kind"] == "paths":
            decl = {**decl, "chains": path_chains(decl["teacher"], decl["student"], decl["assistants"])}
        return super().figure(name, decl)

    def claims(self) -> list[Claim]:
        experiment, stat = self.experiment, self.stat
        out: list[Claim] = []
        for dataset in self.config["datasets"]:
            for row in experiment["tables"]["takd_table1"]["rows"]:
                cells = row["cells"]
                out.append(compare(f"BLKD beats NOKD ({row['model']}, {dataset})", stat(cells["BLKD"], dataset), stat(cells["NOKD"], dataset)))
                out.append(compare(f"TAKD beats BLKD ({row['model']}, {dataset})", stat(cells["TAKD"], dataset), stat(cells["BLKD"], dataset)))
            for panel in experiment["figures"]["takd_fig2"]["panels"]:
                students = {t: stat([t, panel["student"]], dataset) for t in panel["teachers"]}
                best = max(students, key=lambda t: students[t].mean)
                largest = panel["teachers"][-1]
                out.append(Claim(
                    f"the largest teacher is not the best teacher ({panel['label']}, {dataset})",
                    verdict(best != largest and students[best].mean - students[largest].mean > 0, students[best], students[largest]),
                    f"best teacher {best}: {students[best].text()}; largest {largest}: {students[largest].text()}",
                ))
            for table in ("takd_table2", "takd_table3"):
                out.append(ta_midpoint_claim(experiment["tables"][table], dataset, stat))
            paths = experiment["figures"]["takd_paths"]
            by_length: dict[int, list[float]] = {}
            for chain in path_chains(paths["teacher"], paths["student"], paths["assistants"]):
                by_length.setdefault(len(chain) - 2, []).extend(stat(chain, dataset).values)
            means = {k: sum(v) / len(v) for k, v in sorted(by_length.items()) if v}
            direct, longest = stat([paths["teacher"], paths["student"]], dataset), stat([paths["teacher"], *paths["assistants"], paths["student"]], dataset)
            out.append(Claim(
                f"longer distillation paths help ({dataset})",
                verdict(longest.mean > direct.mean, longest, direct),
                "mean student accuracy by number of TAs: " + ", ".join(f"{k}: {m:.2f}" for k, m in means.items())
                + f"; longest path {longest.text()} vs direct {direct.text()}",
            ))
        return out


def ta_midpoint_claim(table: dict[str, Any], dataset: str, stat) -> Claim:
    """The best TA is the one whose own accuracy lies nearest the teacher/student accuracy midpoint."""
    cells = table["rows"][0]["cells"]
    chains_by_ta = {col: tpl.split("-") for col, tpl in cells.items()}
    teacher, student = next(iter(chains_by_ta.values()))[0], next(iter(chains_by_ta.values()))[-1]
    acc_mid = (stat(teacher, dataset).mean + stat(student, dataset).mean) / 2
    size_mid = (model_info(teacher)["depth"] + model_info(student)["depth"]) / 2
    ta_acc = {col: stat(chain[1], dataset).mean for col, chain in chains_by_ta.items()}
    ta_size = {col: model_info(chain[1])["depth"] for col, chain in chains_by_ta.items()}
    students = {col: stat(tpl, dataset) for col, tpl in cells.items()}
    best = max(students, key=lambda c: students[c].mean)
    by_acc = min(ta_acc, key=lambda c: abs(ta_acc[c] - acc_mid))
    by_size = min(ta_size, key=lambda c: abs(ta_size[c] - size_mid))
    if by_acc == by_size:
        judged = "inconclusive: the accuracy and the size midpoint pick the same TA"
    else:
        judged = verdict(best == by_acc, students[best], students[by_size])
    return Claim(
        f"the best TA sits near the accuracy midpoint, not the size midpoint ({table['rows'][0]['model']}, {dataset})",
        judged,
        f"best TA {best} ({students[best].text()}); TA nearest the accuracy midpoint {acc_mid:.2f}: {by_acc}; "
        f"nearest the size midpoint {size_mid:g}: {by_size} ({students[by_size].text()})",
    )


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


