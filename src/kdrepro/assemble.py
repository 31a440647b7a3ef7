"""The top of the package (below the CLI and the Snakefile): a setting's registry, assembled from the papers.

Each paper reads its experiment file (config/experiments/<paper>.yaml) and its published values
(config/paper_values/<paper>.yaml) and registers its runs, targets and searches; the claims report then
gets every paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdrepro.config import conform, read_yaml
from kdrepro.experiments import Registry
from kdrepro.graph import check_graph
from kdrepro.papers.base import Paper
from kdrepro.papers.cckd import CCKD
from kdrepro.papers.compare import Compare
from kdrepro.papers.fitnets import FitNets
from kdrepro.papers.ktg import KTG
from kdrepro.papers.takd import TAKD
from kdrepro.papers.tfkd import TfKD
from kdrepro.paths import EXPERIMENTS, EXPERIMENTS_SCHEMA, PAPER_VALUES
from kdrepro.report.claims import claims_figure_target, claims_target
from kdrepro.report.convergence import convergence_target
from kdrepro.report.runs_index import runs_target

PAPERS: list[type[Paper]] = [TAKD, TfKD, CCKD, KTG, FitNets, Compare]  # the claims report's order


def load_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (kdrepro reads its experiment files from the repository it is "
                                "installed from: `pip install -e .` there)")
    return read_yaml(path) or {}


def load_experiment(paper: str, experiments_dir: Path = EXPERIMENTS) -> dict[str, Any]:
    """A paper's experiment file, checked against its schema (the file and the dotted key are named)."""
    path = experiments_dir / f"{paper}.yaml"
    return conform(load_yaml(path), EXPERIMENTS_SCHEMA, where=str(path), definition=paper)


def assemble(config: dict[str, Any], experiments_dir: Path = EXPERIMENTS,
             paper_values_dir: Path = PAPER_VALUES) -> tuple[Registry, dict[str, Paper]]:
    """All runs, targets and searches of every paper the (validated) setting builds (`experiments`), and those
    papers. Every experiment file is read: one paper's runs may be another's (CCKD's and the comparison's are TAKD's)."""
    registry = Registry(config)
    for paper in PAPERS:
        registry.experiments[paper.name] = load_experiment(paper.name, experiments_dir)
    papers = {paper.name: paper(registry, registry.experiments[paper.name], load_yaml(paper_values_dir / f"{paper.name}.yaml"))
              for paper in PAPERS if paper.name in config["experiments"]}
    for paper in papers.values():
        paper.build()
    if config["convergence"] is not None:  # after the papers: it checks the scratch runs they registered
        registry.targets["convergence_table"] = convergence_target(registry, config["convergence"])
    registry.targets["claims_fig"] = claims_figure_target(registry, papers)
    registry.targets["claims"] = claims_target(registry, papers, figure="claims_fig")
    registry.targets["runs"] = runs_target(registry)
    check_graph(registry.runs)
    return registry, papers


def build_registry(config: dict[str, Any], experiments_dir: Path = EXPERIMENTS) -> Registry:
    return assemble(config, experiments_dir)[0]
