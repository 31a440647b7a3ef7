"""What `kdrepro list` and `kdrepro status` read of a setting's registry, cached across invocations.

Building a registry loads every paper and the report code (with pandas); listing runs and methods
and showing the runs' status needs only the runs' names, dependencies, epochs and config hashes, the papers'
target names and the comparison's method descriptions. Those are written once per setting content, code
version and working directory to a JSON file under the user cache: the key hashes the validated setting, the
package's source files, the experiment files, the published values, the schemas, the working directory and the
content of the setting's image folders and external teachers' files (which are in their runs' config hashes). A
search that has finished adds runs, so each summary also records the result files of the setting's searches
and is used only while they are as they were.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdrepro.data.files import file_sha256
from kdrepro.data.folders import fingerprint, setting_folders
from kdrepro.experiments import Registry
from kdrepro.io import save_json
from kdrepro.paths import EXPERIMENTS, PAPER_VALUES, REPO, SCHEMA, USER_CACHE
from kdrepro.teachers import setting_teachers

PACKAGE = Path(__file__).resolve().parent
SOURCES = [(PACKAGE, "**/*.py"), (EXPERIMENTS, "*.yaml"), (PAPER_VALUES, "*.yaml"), (SCHEMA.parent, "*.yaml")]


@dataclass(frozen=True)
class Summary:
    setting: str
    runs: dict[str, dict[str, Any]]  # run -> {"dependencies": [...], "epochs": n, "config_hash": h}, in the registry's order
    papers: dict[str, list[str]]  # paper -> its targets
    methods: dict[str, str]  # comparison method -> its description: compare.yaml's, then the setting's compare.define
    watched: dict[str, str | None]  # a search result file (absolute) -> its sha256 when summarised (None: absent)

    def run_dir(self, run: str) -> Path:
        return Path("results") / self.setting / "runs" / run


def file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def key(config: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode() + str(Path.cwd()).encode())
    folders = setting_folders(config)
    for name in config["datasets"]:  # an image folder's content is in its runs' config hashes
        if name in folders and folders[name].problem is None:
            digest.update(f"{name}\0{fingerprint(folders[name].root)}\0".encode())
    for name, teacher in setting_teachers(config).items():  # so is an external teacher's file's
        if teacher.problem is None:
            digest.update(f"{name}\0{file_sha256(teacher.path)}\0".encode())
    for folder, pattern in SOURCES:
        for path in sorted(folder.glob(pattern)):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def summarise(registry: Registry) -> Summary:
    return Summary(
        setting=registry.setting,
        runs={name: {"dependencies": spec.dependencies, "epochs": spec.epochs, "config_hash": spec.config_hash}
              for name, spec in registry.runs.items()},
        papers=registry.papers(),
        methods={name: method["description"] for name, method in comparison_methods(registry).items()},
        watched={str(s.study.best_path.resolve()): file_hash(s.study.best_path) for s in registry.searches.values()},
    )


def comparison_methods(registry: Registry) -> dict[str, dict[str, Any]]:
    """The methods a comparison may name. The setting's `compare.define` counts only where the setting builds
    the comparison: only then are its methods checked (kdrepro.papers.compare), their descriptions present."""
    own = registry.config["compare"]["define"] if "compare" in registry.config["experiments"] else {}
    return {**registry.experiments["compare"]["methods"], **own}


def path_for(config: dict[str, Any], cache: Path) -> Path:
    return cache / "summaries" / f"{config['setting']}-{key(config)}.json"


def cached(config: dict[str, Any], cache: Path = USER_CACHE) -> Summary | None:
    """The summary of this setting as the code and files are now; None if there is none yet."""
    path = path_for(config, cache)
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    # runs, papers and methods are stored as pairs: the file's keys are sorted, the registry's order is kept
    summary = Summary(raw["setting"], dict(raw["runs"]), dict(raw["papers"]), dict(raw["methods"]), raw["watched"])
    if any(file_hash(Path(p)) != sha for p, sha in summary.watched.items()):
        return None
    return summary


def store(config: dict[str, Any], registry: Registry, cache: Path = USER_CACHE) -> Summary:
    summary = summarise(registry)
    path = path_for(config, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(asdict(summary) | {name: list(getattr(summary, name).items()) for name in ("runs", "papers", "methods")}, path)
    return summary
