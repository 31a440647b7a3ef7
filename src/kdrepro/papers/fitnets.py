"""FitNets (Romero et al., ICLR 2015): Tables 1-5, the AFLW table, Fig. 3 and the claims, on the runs of
kdrepro.papers.fitnets_runs (its templates and specs).

Tables 1-4 and AFLW show, per dataset of the setting, ours (parameters counted as the paper does, accuracy or
misclassification) beside the paper's; Table 5 adds the networks' inference time measured on this machine when
it renders (kdrepro.bench.inference_seconds), and the speed claim reads those measurements from its CSV.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pandas as pd

from kdrepro.catalog import model_info
from kdrepro.experiments import Target, dataset_facts, run_of
from kdrepro.papers.fitnets_runs import FitNetsRuns, parse
from kdrepro.report.claims import Claim, PaperEffect, compare
from kdrepro.report.figures import errorbar, figure_kind, figure_target
from kdrepro.report.results import Stat
from kdrepro.report.tables import TableContent, caption, frame_table

SPEED_IMAGES = 1024  # inference timing: at most this many test images per pass
SPEED_REPEATS = 3


class FitNets(FitNetsRuns):
    def inference_seconds(self, archs: list[str], dataset: str) -> tuple[dict[str, float], str]:
        """Seconds of one pass over (at most SPEED_IMAGES of) the test split per network as trained, with the
        setting's threads; weights do not change the time, so the networks are freshly built."""
        # imported here: only rendering Table 5 times networks (start-up time of every other command)
        import torch

        from kdrepro.bench import inference_seconds

        channels, size = self.input_shape(dataset)
        n = min(dataset_facts(dataset, self.config).test, self.config["data"]["test_subset"] or SPEED_IMAGES, SPEED_IMAGES)
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
        read = [r for rs in cells.values() for r in rs]
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
                           self.results, read, self.paper_values.get("source", ""))
            return TableContent(frame, text, shown)

        return frame_table(self.registry, name, self.name, read, content)

    def tradeoff_table(self, name: str, decl: dict[str, Any]) -> Target:
        """Table 5: layers, parameters and multiplications (the paper's counts), accuracy, measured speed-up and compression."""
        datasets = self.datasets(decl["dataset"])
        published = self.paper_values.get(name, {})
        cells = {(row["algorithm"], ds): self.register(row["template"], ds) for row in decl["rows"] for ds in datasets}
        read = [r for rs in cells.values() for r in rs]

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
                    record = {"network": algorithm, "arch": arch, "dataset": ds or decl["dataset"], "layers": model_info(arch)["depth"],
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
            ran = "speedup" in frame  # the setting has the table's dataset: the networks as trained, timed here
            if ran:
                frame["# params / # mult as trained"] = [f"{human(p)} / {human(m)}" for p, m in zip(frame["params_trained"], frame["mult_trained"])]
                frame["Speed-up (ours)"] = [fmt(v, lambda x: f"{x:.2f}") for v in frame["speedup"]]
                frame["Compression (ours)"] = [fmt(v, lambda x: f"{x:.2f}") for v in frame["compression"]]
            frame["Speed-up (paper)"] = [fmt(v, lambda x: f"{x:g}") for v in frame["paper_speedup"]]
            frame["Compression (paper)"] = [fmt(v, lambda x: f"{x:g}") for v in frame["paper_compression"]]
            if_ran = lambda column: [column] if ran else []  # noqa: E731
            shown = ["network", "dataset", "# layers (ours / paper)", "# params full (ours / paper)", "# mult full (ours / paper)",
                     *if_ran("# params / # mult as trained"), "Acc % (ours)", "Acc % (paper)", *if_ran("Speed-up (ours)"),
                     "Speed-up (paper)", *if_ran("Compression (ours)"), "Compression (paper)"]
            measured = f" Timed on {frame['machine'].dropna().iloc[0]}." if ran else ""
            note = decl.get("caption", "") + measured + self.ours_on(datasets, decl["dataset"])
            text = caption(self.registry, decl["title"], f"{note} {self.note()}", self.results, read, self.paper_values.get("source", ""))
            return TableContent(frame, text, shown)

        return frame_table(self.registry, name, self.name, read, content)

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
                for method, label, row in (("scratch", "backprop", "Standard backprop"), ("kd", "KD", "Knowledge Distillation")):
                    paper = self.table_gap(table, decl, "FitNet", row)
                    beyond = "" if paper else f" — tested beyond the paper: its {decl['dataset']} table has no {label} row"
                    out.append(compare(f"hints train {student} better than {label} ({ds}){beyond}", hinted,
                                       self.stat(f"{method}:{student}", ds), paper))
                # the paper claims the FitNet beats its teacher only where its own table has it ahead (not on SVHN,
                # where its FitNet is slightly worse: "almost the same")
                paper = self.table_gap(table, decl, "FitNet", "Teacher")
                if paper is None or paper.value <= 0:
                    continue
                teacher = self.teacher(ds)
                ours, theirs = self.counts(student, ds)["params"], self.counts(teacher, ds)["params"]
                out.append(compare(f"the FitNet ({student}, {human(ours)} params) beats its teacher ({teacher}, {human(theirs)} params) ({ds})",
                                   hinted, self.stat("scratch:teacher", ds), paper))
        return out + self.speed_claims()

    def table_gap(self, table: str, decl: dict[str, Any], better: str, other: str) -> PaperEffect | None:
        """The paper's accuracy of row `better` minus row `other` in one of Tables 1-4 (whose values are keyed by
        row alone, as accuracy or misclassification), on the table's dataset; None where it lacks either row."""
        rows = self.paper_values.get(table, {})
        if better not in rows or other not in rows:
            return None
        gap = rows[better]["value"] - rows[other]["value"]
        return PaperEffect(round(gap if decl["metric"] == "accuracy" else -gap, 4), decl["dataset"])

    def claims_inputs(self) -> list[str]:
        return [self.speed_table]

    @property
    def speed_table(self) -> str:
        """Table 5's numbers, whose measured speed-ups the claims read."""
        return str(self.registry.results_dir / "tables" / "fitnets_table5.csv")

    def speed_claims(self) -> list[Claim]:
        """Table 5's speed-ups, as measured when it was rendered."""
        out = []
        for ds in self.datasets("cifar10"):
            statement = f"FitNets run faster than the teacher at inference (measured on this machine, {ds})"
            try:
                frame = pd.read_csv(self.speed_table)
            except FileNotFoundError:
                out.append(Claim(statement, "inconclusive: render fitnets_table5 first", "no speed-ups measured"))
                continue
            frame = frame[(frame.dataset == ds) & (frame.network != "Teacher")]
            faster = frame.speedup > 1
            evidence = ", ".join(f"{n} x{s:.2f}" for n, s in zip(frame.network, frame.speedup))
            # a timing, not a statistic over seeds (a network's speed does not depend on the seed it was trained with):
            # its own words, so that "reproduced" always means an interval over at least three seeds
            judged = ("holds (a timing on this machine, not a statistic over seeds: every FitNet ran faster)" if faster.all() else
                      "fails (a timing on this machine: no FitNet ran faster)" if not faster.any() else
                      f"inconclusive: {int(faster.sum())} of {len(frame)} FitNets ran faster")
            out.append(Claim(statement, judged, f"speed-up over the teacher: {evidence}"))
        return out


def metric_of(stat: Stat, metric: str) -> tuple[float, float, str]:
    """(mean, std, text) of accuracy or misclassification (100 - accuracy)."""
    if not stat.values:
        return math.nan, math.nan, "missing"
    values = stat.values if metric == "accuracy" else [100 - v for v in stat.values]
    shown = replace(stat, values=values)  # keeps the mark of a run that did not train
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
