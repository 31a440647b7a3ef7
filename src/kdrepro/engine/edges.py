"""The edges of a run: what each reads from its nodes, the modules some carry (regressors, embedding heads),
and every edge's gated loss for a batch."""

from __future__ import annotations

import torch
from torch import nn

from kdrepro.data.device import DeviceData
from kdrepro.graph import LABELS, Edge, RunSpec
from kdrepro.losses import GATES, LOSS_INFO, LOSSES
from kdrepro.losses.registry import split_options
from kdrepro.models.features import FeatureTap

# What an edge may read from a node besides its logits, and the module path that FeatureTap taps for it.
# An edge may name other modules (options source_layer / target_layer, e.g. FitNets' hint and guided
# layers): such a read is keyed by its module path, which FeatureTap then taps as it is.
TAPS = {"embedding": "embedding", "feature_map": "embedding:input"}


def edge_reads(edge: Edge) -> tuple[str, str]:
    """What the edge reads at (source, target): its loss's `inputs`, or the module paths it names."""
    inputs = LOSS_INFO[edge.loss].inputs
    return edge.options.get("source_layer", inputs), edge.options.get("target_layer", inputs)


def edge_key(index: int, edge: Edge) -> str:
    """The key of an edge's module in the models dict (and in checkpoints): "edge0:hint:teacher->student"."""
    return f"edge{index}:{edge.label}"


def build_edge_modules(spec: RunSpec, models: dict[str, nn.Module], data: DeviceData, device: str) -> dict[str, nn.Module]:
    """The parameters of edges whose loss registers a module factory (regressors, embedding heads),
    shaped by one dummy batch through both nodes (in eval mode, so no BN statistic moves) and
    initialised from (seed, edge index). They train with the target node, in the same optimizer."""
    modules: dict[str, nn.Module] = {}
    for index, edge in enumerate(spec.edges):
        info = LOSS_INFO[edge.loss]
        if info.module is None:
            continue
        dummy = torch.zeros(2, data.in_channels, data.image_size, data.image_size, device=device)
        with torch.no_grad():
            outputs = []
            for name, read in zip((edge.source, edge.target), edge_reads(edge)):
                was_training = models[name].training
                outputs.append(forward(models[name].eval(), [read], dummy)[read])
                models[name].train(was_training)
        torch.manual_seed(spec.seed * 1000 + 500 + index)
        _, module_options = split_options(edge.loss, edge.options)
        modules[edge_key(index, edge)] = info.module(*outputs, **module_options).to(device)
    return modules


def edge_modules(spec: RunSpec, models: dict[str, nn.Module]) -> list[nn.Module]:
    return [models[edge_key(i, e)] for i, e in enumerate(spec.edges) if edge_key(i, e) in models]


def node_inputs(spec: RunSpec) -> dict[str, list[str]]:
    """Per node, the outputs besides its logits that some edge reads."""
    needs: dict[str, set[str]] = {}
    for edge in spec.edges:
        for end, read in zip((edge.source, edge.target), edge_reads(edge)):
            if read != "logits" and end != LABELS:
                needs.setdefault(end, set()).add(read)
    return {name: sorted(v) for name, v in needs.items()}


def forward(model: nn.Module, inputs: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"logits": model(images)} plus each named intermediate output, read through forward hooks."""
    if not inputs:
        return {"logits": model(images)}
    wanted = [i for i in inputs if i != "logits"]
    with FeatureTap(model, [TAPS.get(i, i) for i in wanted]) as tap:
        logits = model(images)
    return {"logits": logits} | {i: tap.features[TAPS.get(i, i)] for i in wanted}


def edge_losses(spec: RunSpec, models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                progress: float, known: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Every edge's gated loss. Sources are detached, so each loss trains only its target node (and
    the edge's own module, if it has one). A loss reads the output its registration names (logits,
    embedding, feature map); gates always see the source's logits. `known` holds outputs computed
    beforehand for this batch (cached frozen nodes): node -> {"logits": ..., "embedding": ...}."""
    outputs = dict(known or {})
    needs = node_inputs(spec)
    for node in spec.nodes:
        if node.name not in outputs:
            with torch.set_grad_enabled(node.trainable):
                outputs[node.name] = forward(models[node.name], needs.get(node.name, []), images)
    losses = []
    for index, edge in enumerate(spec.edges):
        source_read, target_read = edge_reads(edge)
        source = None if edge.source == LABELS else outputs[edge.source][source_read].detach()
        target = outputs[edge.target][target_read]
        module = models.get(edge_key(index, edge))
        if module is not None:
            source, target = module(source, target)
        loss_options, _ = split_options(edge.loss, edge.options)
        per_sample = LOSSES[edge.loss](source, target, labels, **loss_options)
        gate = GATES[edge.gate](None if edge.source == LABELS else outputs[edge.source]["logits"].detach(), labels, progress,
                                **edge.gate_options)
        losses.append(edge.weight * (gate * per_sample).mean())
    return losses
