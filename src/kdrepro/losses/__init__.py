"""Edge losses and gates of the knowledge-transfer graph.

An edge loss maps (source output, target output, labels) to a per-sample loss;
a gate maps the same inputs plus training progress to a per-sample weight.
Methods are found by name in these registries, never by if/elif chains.
"""

from kdrepro.losses.registry import GATES, LOSS_INFO, LOSSES, LossError, register_gate, register_loss
from kdrepro.losses import gates, logits, smoothing  # noqa: F401  (registration side effects)
from kdrepro.losses import correlation  # noqa: F401,E402  (CC and hint losses on embeddings)
from kdrepro.losses import fitnets  # noqa: F401,E402  (FitNets' hint and KD cross-entropy)
from kdrepro.losses import attention, relational  # noqa: F401,E402  (AT, SP, RKD, PKT baselines)

__all__ = ["GATES", "LOSS_INFO", "LOSSES", "LossError", "register_gate", "register_loss"]
