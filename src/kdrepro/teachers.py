"""External teachers: networks trained elsewhere, named by the setting, that frozen nodes load (no torch here).

A setting names them under `teachers: {NAME: {arch, path, options, dataset}}`; NAME then stands for the teacher
in `compare.pairs`. A run names the file by its content, never by its path: a frozen node's `weights_sha256` is
the sha256 of the file's bytes (computed once per version of the file: kdrepro.data.files), and the path reaches
the job through the environment (TEACHERS_ENV, set from the setting by the Snakefile, `kdrepro train RUN` and
`kdrepro search`, inherited by the jobs), so that a moved copy or a symlink of the same file trains nothing
again, and a changed file is another configuration. A hand-written spec may give the path itself (the node's
`weights_file`, outside the config hash as a data root is). kdrepro.engine.external reads and checks the file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdrepro import io
from kdrepro.catalog import ModelError, check_model_options, list_models
from kdrepro.data.files import file_sha256
from kdrepro.errors import CheckpointError

TEACHERS_ENV = "KDREPRO_TEACHERS"  # JSON {name: path} of the setting's external teachers, for the jobs


@dataclass(frozen=True)
class ExternalTeacher:
    name: str
    arch: str
    options: dict[str, Any]
    dataset: str  # the dataset it was trained on: its runs are on that dataset only
    path: Path | None  # None: neither the setting nor the environment gives one

    @property
    def key(self) -> str:
        return f"teachers.{self.name}"

    @property
    def problem(self) -> str | None:
        """Why the file cannot be read (None: it is there)."""
        if self.path is None:
            return f"no path is given (not in the setting, and {TEACHERS_ENV} names none for {self.name!r})"
        if not self.path.is_file():
            return (f"no file at {self.path.absolute()} (the path expected; a relative path is from the working "
                    f"directory, {Path.cwd()})")
        return None


def setting_teachers(config: dict[str, Any]) -> dict[str, ExternalTeacher]:
    """The setting's external teachers by name; a path the setting leaves out is the environment's (TEACHERS_ENV):
    results/<setting>/setting.json, which the jobs read, is written without them (without_paths)."""
    exported = exported_paths()
    teachers = {}
    for name, entry in config.get("teachers", {}).items():
        path = entry.get("path") or exported.get(name)
        teachers[name] = ExternalTeacher(name, entry["arch"], dict(entry.get("options", {})), entry["dataset"],
                                         Path(path) if path else None)
    return teachers


def teacher_problems(config: dict[str, Any]) -> dict[str, str]:
    """What keeps each external teacher of the setting from being used, by the setting key it concerns (no torch:
    whether the file's weights fit the network is checked when a run names the teacher, kdrepro.engine.external)."""
    problems = {}
    models = list_models()
    for name, teacher in setting_teachers(config).items():
        if name in models:
            problems[teacher.key] = (f"{name!r} is a model's name: a teacher's name stands for it in compare.pairs, "
                                     "so it must be another")
        elif teacher.arch not in models:
            problems[f"{teacher.key}.arch"] = f"unknown model {teacher.arch!r}; known: {', '.join(models)}"
        elif teacher.dataset not in config["datasets"]:
            problems[f"{teacher.key}.dataset"] = (f"{teacher.dataset!r} is not one of the setting's datasets "
                                                  f"({', '.join(config['datasets'])})")
        elif teacher.problem is not None:
            problems[f"{teacher.key}.path"] = teacher.problem
        else:
            try:
                check_model_options(teacher.arch, teacher.options)
            except ModelError as err:
                problems[f"{teacher.key}.options"] = str(err)
    return problems


def without_paths(config: dict[str, Any]) -> dict[str, Any]:
    """The setting less its teachers' paths (the jobs have them from TEACHERS_ENV), for results/<setting>/setting.json:
    moving a teacher's file, or linking it elsewhere, reruns no target either."""
    out = copy.deepcopy(config)
    for entry in out.get("teachers", {}).values():
        entry.pop("path", None)
    return out


# ---- the paths, for the jobs -----------------------------------------------------------------------
def export_paths(config: dict[str, Any]) -> None:
    """TEACHERS_ENV set to the setting's teachers' paths (absolute: a job may start elsewhere; a path the setting
    leaves out stays the environment's), for this process and every process it starts."""
    io.export_paths(TEACHERS_ENV, {name: str(t.path.absolute()) for name, t in setting_teachers(config).items() if t.path})


def exported_paths() -> dict[str, str]:
    return io.exported_paths(TEACHERS_ENV, "teacher names to their files", CheckpointError)


def weights_path(weights_file: str | None, sha256: str) -> Path:
    """The file whose bytes have this sha256, that a frozen node loads: its spec's own `weights_file`, else the
    external teacher of that content among those this process was given (TEACHERS_ENV); an error saying which
    files were looked at where none has it (a file changed after the run was planned, say)."""
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise CheckpointError(f"weights_file: no file at {path.absolute()} (a relative path is from the working "
                                  f"directory, {Path.cwd()})")
        found = file_sha256(path)
        if found != sha256:
            raise CheckpointError(f"weights_file {path}: its sha256 is {found}, not the spec's weights_sha256 {sha256} "
                                  "(the file changed after the spec named it)")
        return path
    exported = exported_paths()
    seen = []
    for name, text in exported.items():
        path = Path(text)
        found = file_sha256(path) if path.is_file() else "no such file"
        if found == sha256:
            return path
        seen.append(f"{name}: {path} ({found})")
    given = f"{TEACHERS_ENV} names {'; '.join(seen)}" if exported else f"{TEACHERS_ENV} names no teacher"
    raise CheckpointError(f"no external teacher this process was given has the content the spec names (sha256 {sha256}): "
                          f"{given}. The Snakefile, `kdrepro train RUN --configfile SETTING` and `kdrepro search` set it "
                          "from the setting's teachers.NAME.path (a file changed since the run was planned is another "
                          "configuration: run them again); a hand-written spec gives the node's weights_file")


def with_file_hashes(raw: Any) -> Any:
    """A spec's dict form with each node that names a weights_file but no weights_sha256 given the file's sha256
    (what `kdrepro train --spec-json` accepts from a user, who names a file by its path)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list):
        return raw
    nodes = []
    for i, node in enumerate(raw["nodes"]):
        if isinstance(node, dict) and isinstance(node.get("weights_file"), str) and "weights_sha256" not in node:
            path = Path(node["weights_file"])
            if not path.is_file():
                raise CheckpointError(f"run spec {raw.get('name')}: nodes.{i}.weights_file: no file at {path.absolute()} "
                                      f"(a relative path is from the working directory, {Path.cwd()})")
            node = {**node, "weights_sha256": file_sha256(path)}
        nodes.append(node)
    return {**raw, "nodes": nodes}
