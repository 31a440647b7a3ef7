"""The run registry's types: every run, target (table, figure, claims) and search of a setting.

kdrepro.assemble fills a Registry from the papers (kdrepro.papers); Snakemake builds its DAG from it
alone: a target's inputs are the metrics of the runs it reads (and the files it declares), a run's
inputs are the checkpoints of the runs its frozen nodes name, a search's workers need its pre-trained
runs (which may be what other searches' results add), and what a finished search adds is read from its
result when the workflow asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from kdrepro.data import DatasetMeta
from kdrepro.data.files import file_sha256
from kdrepro.data.folders import root_key, setting_folders, setting_meta, spec_fields
from kdrepro.graph import Node, RunSpec, SpecError
from kdrepro.search_space import SearchDef
from kdrepro.teachers import setting_teachers

def dataset_facts(dataset: str, config: dict[str, Any]) -> DatasetMeta:
    """What the papers need to know of a dataset before it is loaded (the data layer's registry)."""
    meta = setting_meta(dataset, config)
    if meta is None:
        raise SpecError(f"dataset {dataset}: its classes and sizes are not known before loading "
                        f"(for an image folder: {root_key(dataset)} must hold train/ and test/ with one folder per class)")
    return meta


def num_classes(dataset: str, config: dict[str, Any]) -> int:
    return dataset_facts(dataset, config).num_classes


SNAPSHOT = "@epoch"  # "run@epoch3": the snapshot a run saved after epoch 3 (tables read its accuracy)


def run_of(ref: str) -> str:
    """The run behind a reference that may name one of its snapshots."""
    return ref.partition(SNAPSHOT)[0]


@dataclass
class Target:
    name: str
    paper: str
    kind: str  # table | figure | claims | index
    runs: list[str]
    outputs: list[str]
    render: Callable[[], None]
    inputs: list[str] = field(default_factory=list)  # files it reads besides its runs' (other targets' outputs)


@dataclass(frozen=True)
class Runs:
    """What a run template names on one dataset: its run references (one per seed) and the specs of
    those runs and of every run they need, the needed ones first."""

    refs: list[str]
    specs: dict[str, RunSpec]

    def __add__(self, other: "Runs") -> "Runs":
        return Runs(self.refs + other.refs, {**self.specs, **other.specs})


@dataclass
class Search:
    """A search a paper registers: the study its workers run, the runs they need first, and the runs
    its result adds, which only exist once it has finished."""

    study: SearchDef
    # the runs a trial may freeze; called once the searches in `after` have finished, whose results may name them
    pretrained: Callable[[], list[str]]
    result_runs: Callable[[], Runs]  # read from the result on disk when called; empty before the search has finished
    readers: list[str]  # the paper's targets that read its result (the setting-wide ones read every search's)
    after: list[str] = field(default_factory=list)  # the searches whose results this one trains from (TAKD: a TA's)


@dataclass
class Registry:
    config: dict[str, Any]
    runs: dict[str, RunSpec] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)  # paper -> its experiment file
    searches: dict[str, Search] = field(default_factory=dict)
    # runs a finished search's result added when the registry was built: the workflow takes them from the
    # search's checkpoint, never from the parse, so a search that chooses again changes what is trained
    searched: set[str] = field(default_factory=set)
    # what the runs' specs say of each of the setting's image folders (content fingerprint, channels), found once
    folder_fields: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    # the sha256 of each external teacher's file that a run names, found (and the file checked) once
    teacher_hashes: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def setting(self) -> str:
        return self.config["setting"]

    @property
    def results_dir(self) -> Path:
        return Path("results") / self.setting

    @property
    def figures_dir(self) -> Path:
        return Path("figures") / self.setting

    def run_dir(self, run: str) -> Path:
        return self.results_dir / "runs" / run

    def search_dir(self, study: str) -> Path:
        return self.results_dir / "search" / study

    def seeds(self, paper: str) -> list[int]:
        """A paper block's own `seeds` (a CPU setting may afford fewer for some papers), else the setting's."""
        return list(self.config.get(paper, {}).get("seeds") or self.config["seeds"])

    def datasets(self, paper: str) -> list[str]:
        """A paper block's own `datasets` (the setting's that the paper runs on), else all the setting's."""
        return list(self.config.get(paper, {}).get("datasets") or self.config["datasets"])

    def data_fields(self, dataset: str) -> dict[str, Any]:
        """What a run spec's data says of one of the setting's image folders in place of its root (its content's
        fingerprint, its channels: kdrepro.data.folders), computed once per registry; {} for the other datasets."""
        if dataset not in self.folder_fields:
            folder = setting_folders(self.config).get(dataset)
            self.folder_fields[dataset] = spec_fields(folder) if folder else {}
        return self.folder_fields[dataset]

    def external_node(self, name: str) -> Node | None:
        """A frozen node "teacher" that loads the setting's external teacher `name` (kdrepro.teachers), by its file's
        content; None where the setting names no such teacher. The first time, the file is checked to load strictly
        into the teacher's network for its dataset (an error naming the setting key where it does not)."""
        teacher = setting_teachers(self.config).get(name)
        if teacher is None:
            return None
        if name not in self.teacher_hashes:
            # imported here: the check builds the network (torch), which only a setting that names a teacher pays for
            from kdrepro.engine.external import check_teacher

            meta = dataset_facts(teacher.dataset, self.config)
            check_teacher(teacher, meta.num_classes, meta.channels, self.config["data"]["pad_to"] or meta.size)
            self.teacher_hashes[name] = file_sha256(teacher.path)
        return Node("teacher", teacher.arch, teacher.options, weights_sha256=self.teacher_hashes[name])

    def as_set(self, spec: RunSpec) -> RunSpec:
        """A run as a paper defines it, with what the setting says of every run (`test_every`)."""
        setting_every = self.config.get("test_every", 1)
        every = max(spec.epochs, 1) if setting_every is None else setting_every  # (an evaluation run has 0)
        if spec.data.validation:  # its test accuracy at the best validation epoch needs the test split after each
            every = 1
        # a replaced spec is validated again: only where it changes
        return replace(spec, test_every=every) if every != spec.test_every else spec

    def add_runs(self, specs: dict[str, RunSpec]) -> None:
        """Registers runs as the papers define them, with what the setting says of every run."""
        for name, spec in specs.items():
            spec = self.as_set(spec)
            if name in self.runs and self.runs[name] != spec:
                raise SpecError(f"run {name} is defined twice with different specs")
            self.runs[name] = spec

    def add_search(self, search: Search) -> None:
        """Registers a search, and the runs of its result if it has finished."""
        self.searches[search.study.name] = search
        found = search.result_runs()
        self.add_runs(found.specs)
        self.searched.update(found.refs)

    def spec(self, run: str) -> RunSpec:
        """A registered run, or one that a search's result now adds (a search that finished after the
        registry was built)."""
        if run in self.runs:
            return self.runs[run]
        for search in self.searches.values():
            found = search.result_runs().specs
            if run in found:
                return self.as_set(found[run])
        raise SpecError(f"no run named {run!r} in setting {self.setting}")

    def papers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for target in self.targets.values():
            out.setdefault(target.paper, []).append(target.name)
        return out
