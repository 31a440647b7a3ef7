"""TAKD (Mirzadeh et al., AAAI 2020): runs are chains of architectures, each link a KD run."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from kdrepro.experiments import Registry, Results, Target, book, paper_seeds
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.models import model_info
from kdrepro.report.claims import Claim, compare, verdict
from kdrepro.report.figures import figure_target
from kdrepro.report.tables import table_target

PAPER = "takd"


def run_name(dataset: str, chain: list[str], seed: int) -> str:
    return f"takd/{dataset}/{'-'.join(chain)}/s{seed}"


def chain_specs(chain: list[str], dataset: str, seed: int, config: dict[str, Any], experiment: dict[str, Any]) -> dict[str, RunSpec]:
    """The run of `chain` and, recursively, of every prefix it needs as a teacher."""
    settings = config["takd"]
    protocol = experiment["protocols"][config["protocol"]]
    student = chain[-1]
    family = model_info(student)["family"]
    if family not in protocol["families"]:
        raise SpecError(f"takd: no training recipe for the {family!r} family of {student} "
                        f"(add one under protocols.{config['protocol']}.families in config/experiments/takd.yaml)")
    recipe = protocol["families"][family]
    data = config["data"]
    options = lambda arch: dict(settings["model_options"].get(model_info(arch)["family"], {}))  # noqa: E731
    nodes = [Node("student", student, options(student))]
    edges = [Edge(LABELS, "student", "ce")]
    specs: dict[str, RunSpec] = {}
    if len(chain) > 1:
        teacher_run = run_name(dataset, chain[:-1], seed)
        specs.update(chain_specs(chain[:-1], dataset, seed, config, experiment))
        nodes.insert(0, Node("teacher", chain[-2], options(chain[-2]), frozen_from=teacher_run))
        lam = settings["lambda"]
        kd_options = {"temperature": settings["temperature"], **protocol["kd"]}
        edges = [Edge(LABELS, "student", "ce", weight=1 - lam), Edge("teacher", "student", "kd", weight=lam, options=kd_options)]
    name = run_name(dataset, chain, seed)
    specs[name] = RunSpec(
        name=name,
        data=Data(
            dataset=dataset,
            root=data["roots"].get(dataset),
            download=data["download"],
            train_subset=data["train_subset"],
            test_subset=data["test_subset"],
            validation=data["validation"],
            normalization=protocol["normalization"],
            pad_to=data["pad_to"],
        ),
        nodes=tuple(nodes),
        edges=tuple(edges),
        epochs=settings["epochs"],
        seed=seed,
        batch_size=settings["batch_size"],
        optimizer=Optimizer(**recipe["optimizer"]),
        schedule=Schedule(**{**recipe["schedule"], "milestones": tuple(recipe["schedule"].get("milestones", ()))}),
    )
    return specs


def path_chains(teacher: str, student: str, assistants: list[str]) -> list[list[str]]:
    """Every path teacher -> (a subset of the assistants, in the given order) -> student."""
    return [[teacher, *subset, student] for k in range(len(assistants) + 1) for subset in combinations(assistants, k)]


class Chains:
    """Resolves chain templates ("resnet110-{resnet_ta}-resnet8") per dataset and registers their runs."""

    def __init__(self, registry: Registry, experiment: dict[str, Any]):
        self.registry, self.experiment = registry, experiment

    def runs(self, template: str | list[str], dataset: str) -> list[str]:
        if isinstance(template, str):
            template = template.format(**self.experiment["books"][book(dataset, self.registry.config)]).split("-")
        config = self.registry.config
        names = []
        for seed in paper_seeds(config, PAPER):
            specs = chain_specs(list(template), dataset, seed, config, self.experiment)
            self.registry.add_runs(specs)
            names.append(run_name(dataset, list(template), seed))
        return names


def build(registry: Registry, experiment: dict[str, Any], paper_values: dict[str, Any]) -> None:
    chains = Chains(registry, experiment)
    context = {"paper": PAPER, "paper_title": experiment["paper"], "report": experiment["report"]}
    for name, table in experiment["tables"].items():
        registry.targets[name] = table_target(registry, name, table, paper_values, chains.runs, context)
    for name, figure in experiment["figures"].items():
        if figure["kind"] == "paths":
            figure = {**figure, "chains": path_chains(figure["teacher"], figure["student"], figure["assistants"])}
        registry.targets[name] = figure_target(registry, name, figure, chains.runs, context)


def claims(results: Results) -> list[Claim]:
    """TAKD's qualitative claims, each judged on every dataset of the setting."""
    registry = results.registry
    experiment = registry.experiments[PAPER]
    chains = Chains(registry, experiment)
    stat = lambda template, dataset: results.stat(chains.runs(template, dataset))  # noqa: E731
    out: list[Claim] = []
    for dataset in registry.config["datasets"]:
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
            out.append(_ta_midpoint_claim(experiment["tables"][table], dataset, stat, chains, results))
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


def _ta_midpoint_claim(table: dict[str, Any], dataset: str, stat, chains: Chains, results: Results) -> Claim:
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
