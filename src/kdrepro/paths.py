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
