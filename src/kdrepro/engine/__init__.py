"""The training engine: one loop for every knowledge-transfer graph."""

from kdrepro.engine.checkpoint import CheckpointError, WriteError, load_node_weights
from kdrepro.engine.train import TrainingError, train_run

__all__ = ["CheckpointError", "TrainingError", "WriteError", "load_node_weights", "train_run"]
