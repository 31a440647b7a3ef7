"""The training engine: one loop for every knowledge-transfer graph."""

from kdrepro.engine.checkpoint import CheckpointError, load_node_weights
from kdrepro.engine.evaluate import evaluate_run
from kdrepro.engine.train import TrainingError, train_run
from kdrepro.io import WriteError

__all__ = ["CheckpointError", "TrainingError", "WriteError", "evaluate_run", "load_node_weights", "train_run"]
