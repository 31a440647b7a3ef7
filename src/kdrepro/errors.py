"""The training engine's errors, defined apart from it (torch): the CLI reports them as one line, and a
command that never trains (list, status, render) catches them without importing the engine."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the node that loads it."""


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, for example); the message names the run and the edge."""
