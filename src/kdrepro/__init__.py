"""kdrepro: knowledge-distillation papers reproduced as one Snakemake DAG."""

__version__ = "0.1.0"
