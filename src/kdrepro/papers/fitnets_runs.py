"""FitNets' runs (Romero et al., ICLR 2015): hint pre-training and stage-wise KD; kdrepro.papers.fitnets
builds Tables 1-5, the AFLW table, Fig. 3 and the claims on them.

Every cell is a run template (config/experiments/fitnets.yaml): "scratch:A" (standard backprop), "kd:A" (KD
from the dataset's teacher), "hint:A" (stage 1) and "fitnet:A" (stage 2); "A@B" names the Fig. 3 student
costing B million multiplications. The two stages of Algorithm 1 are two runs:

* stage 1 (hint:A) is a graph of the frozen teacher and the trainable student with one edge,
  `fitnets_hint`, from the teacher's hint layer to the student's guided layer (module paths in the edge
  options, read through FeatureTap) whose regressor is the edge's module. No label edge: the student's
  layers after the guided one receive no gradient (the optimizer skips parameters without one), so the
  run's test accuracy is that of an untrained head and is never reported.
* stage 2 (fitnet:A) is the KD run of A whose student node has init_from = the stage-1 run and
  init_layers = the layers up to the guided one (the official code copies layers 0..guided); every
  other layer starts from the same fresh initialisation as scratch:A and kd:A (same seed, same node
  position), so the three methods differ only in what the paper varies.

The KD term is `kd_ce` (cross-entropy to the softened teacher, no tau^2, Eq. 2), weighted by the
`linear_decay` gate (lambda 4 -> 1 over epochs 5..400 of the reference 288, as fractions of the run);
fitnets.tau_squared uses Hinton's tau^2 KL instead, fitnets.lr_scale scales the rate of the layers
copied from stage 1 (the official -lrs).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from kdrepro.experiments import dataset_facts, num_classes
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, Schedule, SpecError
from kdrepro.models.maxout_layout import ARCHS, DEFAULT_BUDGET, count_layers, hint_layers, layers_for
from kdrepro.papers.base import Paper

METHODS = ("scratch", "kd", "hint", "fitnet")
TEMPLATE = re.compile(r"^(?P<method>[a-z]+):(?P<arch>[a-z0-9_]+)(?:@(?P<budget>[0-9.]+))?$")
OWN_TABLE = ("cifar100", "svhn", "mnist")  # datasets with a table of their own; table 1 takes the others


def parse(template: str) -> tuple[str, str, float | None]:
    match = TEMPLATE.match(template)
    if not match or match["method"] not in METHODS:
        raise SpecError(f"fitnets: bad run template {template!r} (methods: {', '.join(METHODS)}; e.g. fitnet:fitnet4)")
    budget = float(match["budget"]) if match["budget"] else None
    if (budget is None) == match["arch"].startswith("fitnet_depth"):
        raise SpecError(f"fitnets: template {template!r}: a budget (@millions) goes with fitnet_depthN and only with it")
    return match["method"], match["arch"], budget


def guided_layers(arch: str) -> tuple[str, ...]:
    """The module paths of layers 0..guided (Algorithm 1's W_Guided)."""
    last = int(hint_layers(arch).rsplit(".h", 1)[1])
    return tuple(f"features.h{i}" for i in range(last + 1))


class FitNetsRuns(Paper):
    """FitNets' run templates and specs, and its networks as a setting trains them."""

    name = "fitnets"

    # -- datasets ------------------------------------------------------------------------------
    def datasets(self, paper_dataset: str) -> list[str]:
        """The setting's datasets a table or figure runs on: its own dataset if the setting has it;
        for CIFAR-10's (table 1, table 5, Fig. 3) every dataset without a table of its own."""
        setting = self.config["datasets"]
        if paper_dataset == "cifar10":
            return [d for d in setting if d not in OWN_TABLE]
        return [paper_dataset] if paper_dataset in setting else []

    def recipe(self, dataset: str) -> dict[str, Any]:
        return self.experiment["recipes"]["mnist" if dataset == "mnist" else "cifar"]

    def teacher(self, dataset: str) -> str:
        teachers = self.experiment["teachers"]
        return teachers.get(dataset, teachers["default"])

    def input_shape(self, dataset: str) -> tuple[int, int]:
        """(channels, size) of the images the networks see in this setting."""
        pad_to = self.config["data"]["pad_to"]
        facts = dataset_facts(dataset, self.config)
        return facts.channels, max(facts.size, pad_to) if pad_to else facts.size

    def data(self, dataset: str, **overrides: Any) -> Data:
        """FitNets' own training subset, no validation split, the recipe's augmentation."""
        own = {"train_subset": self.settings["train_subset"] or self.config["data"]["train_subset"], "validation": 0,
               **self.augmentation(self.recipe(dataset))}
        return super().data(dataset, **(own | overrides))

    # -- runs ----------------------------------------------------------------------------------
    def options(self, arch: str, budget: float | None = None) -> dict[str, Any]:
        rules = self.experiment["layer_rules"]["fitnet_depth" if budget is not None else arch]
        dropout = self.experiment["teacher_recipes"].get(arch, {}).get("dropout", {})
        options: dict[str, Any] = {"init_range": self.settings["init_range"], **rules, **dropout}
        if budget is not None:
            options["budget"] = budget * 1e6
        elif self.settings["width"] != 1:
            options["width"] = self.settings["width"]
        return options

    def run_name(self, method: str, arch: str, budget: float | None, dataset: str, seed: int) -> str:
        trained = arch if budget is None else f"{arch}-b{budget:g}M"
        if method != "scratch":
            trained = f"{self.teacher(dataset)}-{trained}"
        return f"fitnets/{dataset}/{method}/{trained}/s{seed}"

    def seed_run(self, template: str, dataset: str, seed: int) -> tuple[str, dict[str, RunSpec]]:
        method, arch, budget = parse(template)
        arch = self.teacher(dataset) if arch == "teacher" else arch
        specs = self.specs(method, arch, budget, dataset, seed)
        return next(reversed(specs)), specs

    def specs(self, method: str, arch: str, budget: float | None, dataset: str, seed: int) -> dict[str, RunSpec]:
        """The run of `method` on `arch`, after the runs it needs (the teacher; stage 1 of a FitNet)."""
        name = self.run_name(method, arch, budget, dataset, seed)
        student = Node("student", arch, self.options(arch, budget))
        if method == "scratch":
            is_teacher = arch == self.teacher(dataset)
            epochs = (self.settings["teacher_epochs"] or self.settings["epochs"]) if is_teacher else self.settings["epochs"]
            recipe = self.experiment["teacher_recipes"].get(arch) if is_teacher else None
            return {name: self.run_spec(name, dataset, seed, (student,), (Edge(LABELS, "student", "ce"),), epochs, recipe)}
        teacher_arch = self.teacher(dataset)
        specs = self.specs("scratch", teacher_arch, None, dataset, seed)
        teacher = Node("teacher", teacher_arch, self.options(teacher_arch), frozen_from=next(reversed(specs)))
        if method == "hint":
            hint = Edge("teacher", "student", "fitnets_hint", options={
                "source_layer": hint_layers(teacher_arch), "target_layer": hint_layers(arch),
                "reduction": self.protocol["hint_reduction"], "max_kernel_norm": self.experiment["regressor_max_kernel_norm"]})
            specs[name] = self.run_spec(name, dataset, seed, (teacher, student), (hint,), self.settings["hint_epochs"])
            return specs
        if method == "fitnet":
            specs |= self.specs("hint", arch, budget, dataset, seed)
            student = replace(student, init_from=next(reversed(specs)), init_layers=guided_layers(arch),
                              init_lr_scale=self.settings["lr_scale"])
        specs[name] = self.run_spec(name, dataset, seed, (teacher, student), self.kd_edges(dataset), self.settings["epochs"])
        return specs

    def kd_edges(self, dataset: str) -> tuple[Edge, ...]:
        """CE on the labels plus lambda * the KD term, lambda annealed linearly (TeacherDecayOverEpoch)."""
        recipe = self.recipe(dataset)
        lam, reference = recipe["lambda"], recipe["reference_epochs"]
        decay = {"start": lam["start"], "end": lam["end"], "begin": lam["begin_epoch"] / reference,
                 "until": lam["end_epoch"] / reference}
        loss = "kd" if self.settings["tau_squared"] else "kd_ce"
        kd = Edge("teacher", "student", loss, gate="linear_decay", gate_options=decay,
                  options={"temperature": self.hyper("temperature")})
        return Edge(LABELS, "student", "ce"), kd

    def run_spec(self, name: str, dataset: str, seed: int, nodes: tuple[Node, ...], edges: tuple[Edge, ...],
                 epochs: int, teacher_recipe: dict[str, Any] | None = None) -> RunSpec:
        """A run of the dataset's student recipe, or of `teacher_recipe` (its own optimiser, schedule and augmentation)."""
        recipe = teacher_recipe or self.recipe(dataset)
        lr = self.settings["teacher_lr" if teacher_recipe else "lr"] or recipe["optimizer"]["lr"]
        return RunSpec(
            name=name, data=self.data(dataset, **self.augmentation(recipe)), nodes=nodes, edges=edges, epochs=epochs,
            seed=seed, batch_size=self.settings["batch_size"], optimizer=Optimizer(**{**recipe["optimizer"], "lr": lr}),
            schedule=Schedule.from_dict(recipe.get("schedule", {})),
        )

    def note(self) -> str:
        s = self.settings
        return (f"Setting scale: {s['epochs']} epochs (paper 288 on CIFAR), hint stage {s['hint_epochs']} epoch(s), "
                f"maxout widths x{s['width']}, init_range {s['init_range']}, "
                f"{'augmentation as the official code' if s['augment'] else 'no augmentation'}, no GCN/ZCA whitening, the official "
                f"layer rates and max-norm constraints; KD term {'tau^2 KL (Hinton)' if s['tau_squared'] else 'cross-entropy without tau^2 (Eq. 2)'}, "
                f"lambda annealed linearly; lr scale of the stage-1 layers {s['lr_scale']:g}; RMSProp; the CIFAR teacher: the maxout "
                f"paper's recipe (SGD with momentum, linear decay, dropout), {s['teacher_epochs'] or s['epochs']} epochs (paper 474).")

    # -- networks as trained ---------------------------------------------------------------------
    def network(self, arch: str, dataset: str, budget: float | None = None):
        """A fresh `arch` as this setting trains it on `dataset` (an nn.Module)."""
        # imported here: only rendering Table 5 builds networks, to time them (start-up time of every other command)
        from kdrepro.models.zoo import create_model

        channels, size = self.input_shape(dataset)
        return create_model(arch, num_classes(dataset, self.config), channels, size, **self.options(arch, budget))

    def counts(self, arch: str, dataset: str | None, budget: float | None = None) -> dict[str, float]:
        """Paper-counted weights and multiplications of `arch` as trained on `dataset` (None: at full width
        on a 32x32x3 CIFAR-10 input, the paper's)."""
        if dataset is None:
            if arch not in ARCHS:
                return {}
            mult, params = count_layers(ARCHS[arch], 10, 3, 32)
            return {"params": params, "mult": mult}
        channels, size = self.input_shape(dataset)
        options, classes = self.options(arch, budget), num_classes(dataset, self.config)
        layers = layers_for(arch, channels, size, classes, options.get("width", 1.0), options.get("budget", DEFAULT_BUDGET))
        mult, params = count_layers(layers, classes, channels, size)  # as built: test_fitnets checks them on the networks
        return {"params": params, "mult": mult}
