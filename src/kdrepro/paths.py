"""Where the package finds its own files, whatever the working directory: in the repository it is installed
from (`pip install -e .`, as the bootstrap and workflow/envs/kdrepro.yaml install it). What it writes (results/,
figures/) goes under the working directory, as Snakemake's outputs do."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
DEFAULT_SETTING = CONFIG / "config.yaml"
EXPERIMENTS = CONFIG / "experiments"  # one file per paper: its runs, tables, figures and loss hyper-parameters
PAPER_VALUES = CONFIG / "paper_values"  # the published numbers beside ours
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"  # what a setting may say
EXPERIMENTS_SCHEMA = REPO / "workflow" / "schemas" / "experiments.schema.yaml"  # what an experiment file may say
# a run directory's lock, and its resume states: the newest, and the one before it (used if the newest is damaged);
# the engine writes them, `kdrepro status` looks for them
LOCK, RESUME, PREVIOUS_RESUME = ".lock", "resume.pt", "resume.prev.pt"
USER_CACHE = Path.home() / ".cache" / "kdrepro"  # downloaded datasets, the catalogue of models and losses (kdrepro.catalog)
