"""A user's image folders, named by the setting, known without torch: where they are, what they hold.

A setting names its folders under `image_folders: {NAME: {root: PATH, channels: 1 | 3 | null}}`; NAME is
then a dataset like the built-in ones (`datasets`, a paper's `datasets`). `image_folder`, the one folder
of older settings, is such a folder too: its root is `data.roots.image_folder` (else the user cache's
image_folder/) and it is read as RGB, unless `image_folders.image_folder` says otherwise.

Each folder is root/{train,test}/<class>/<image>, classes from train/'s folders (torchvision's
ImageFolder layout). A run names its folder's content, not its path: the spec carries the folder's
fingerprint (its listing, each image's relative path and size, and a digest of the bytes, computed once
per version of the files: kdrepro.data.files) and its channels; the root reaches the job through the
environment (ROOTS_ENV, set from the setting by the Snakefile, `kdrepro train RUN` and `kdrepro search`,
inherited by the jobs), so that a moved copy or a symlink of the same images trains nothing again, and
new images do.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdrepro import io
from kdrepro.data.files import STAMPS, contents_digest, file_stats, relative
from kdrepro.data.meta import (
    PUBLISHED,
    SPLITS,
    DatasetError,
    DatasetMeta,
    dataset_meta,
    default_root,
    folder_meta,
    folder_problem,
    listing,
)

ROOTS_ENV = "KDREPRO_DATA_ROOTS"  # JSON {name: root} of the setting's image folders, for the jobs
LEGACY = "image_folder"  # the one folder of older settings: data.roots.image_folder, read as RGB


@dataclass(frozen=True)
class ImageFolder:
    name: str
    root: Path | None  # None: neither the setting nor the environment gives one
    channels: int | None  # 1 or 3; None: as the images are (greyscale ones stay single-channel)
    key: str  # the setting key that gives its root

    @property
    def problem(self) -> str | None:
        """What keeps the folder from being read (None: nothing)."""
        if self.root is None:
            return f"no root is given (not in the setting, and {ROOTS_ENV} names none for {self.name!r})"
        return folder_problem(self.root)


def root_key(name: str) -> str:
    return f"image_folders.{name}.root" + (f" (or data.roots.{LEGACY})" if name == LEGACY else "")


def setting_folders(config: dict[str, Any]) -> dict[str, ImageFolder]:
    """The setting's image folders by name: its `image_folders`, and `image_folder` where its datasets name it.
    A root the setting leaves out is the environment's (ROOTS_ENV): results/<setting>/setting.json, which the
    jobs read, is written without them (without_roots)."""
    exported = exported_roots()
    folders = {}
    for name, entry in config.get("image_folders", {}).items():
        root = entry.get("root") or exported.get(name)
        folders[name] = ImageFolder(name, Path(root) if root else None, entry.get("channels"), f"image_folders.{name}.root")
    if LEGACY in config.get("datasets", []) and LEGACY not in folders:
        root = config.get("data", {}).get("roots", {}).get(LEGACY) or exported.get(LEGACY)
        folders[LEGACY] = ImageFolder(LEGACY, Path(root) if root else default_root(LEGACY), 3,
                                      f"data.roots.{LEGACY}" if root else f"data.roots.{LEGACY} (not set: the default place)")
    return folders


def without_roots(config: dict[str, Any]) -> dict[str, Any]:
    """The setting less its image folders' roots (the jobs have them from ROOTS_ENV): what the workflow writes to
    results/<setting>/setting.json, an input of every search and target, so that moving the images, or reaching
    them through a symlink, reruns none of those either."""
    out = copy.deepcopy(config)
    for name in setting_folders(config):
        out.get("image_folders", {}).get(name, {}).pop("root", None)
        if name == LEGACY:
            out.get("data", {}).get("roots", {}).pop(LEGACY, None)
    return out


def known_datasets(config: dict[str, Any]) -> list[str]:
    return sorted({*PUBLISHED, LEGACY, *config.get("image_folders", {})})


# ---- the content ----------------------------------------------------------------------------------
def fingerprint(root: Path) -> str:
    """The folder's content as the loader reads it: the listing (relative paths, sizes) and a digest of the bytes,
    hashed once per version of the files (kdrepro.data.files); the same for a copy or a symlink of the folder."""
    files = listing(root)
    paths = [path for split in SPLITS for _, path in files[split]]
    stats = file_stats(paths)
    entries = [(name, size) for name, (_, size, _) in zip(relative(root, paths), stats)]
    digest = contents_digest(root, paths, STAMPS, stats)
    return hashlib.sha256(json.dumps([entries, digest]).encode()).hexdigest()[:16]


# ---- the setting's folders, checked and identified ----------------------------------------------
def setting_meta(name: str, config: dict[str, Any]) -> DatasetMeta | None:
    """The facts of one of the setting's datasets (an image folder's from its listing); None: not known before loading."""
    folder = setting_folders(config).get(name)
    if folder is None:
        return dataset_meta(name, config["data"]["roots"].get(name))
    return folder_meta(folder.root, name, folder.channels) if folder.root else None


def spec_fields(folder: ImageFolder) -> dict[str, Any]:
    """What a run spec says of an image folder: its content and channels, not its root (which the job finds in
    ROOTS_ENV); a folder that is not there is an error naming the setting key."""
    problem = folder.problem
    if problem is not None or folder.root is None:
        raise DatasetError(f"{folder.key}: image folder {folder.name!r}: {problem}")
    return {"root": None, "channels": folder.channels, "fingerprint": fingerprint(folder.root)}


# ---- the roots, for the jobs ---------------------------------------------------------------------
def export_roots(config: dict[str, Any]) -> None:
    """ROOTS_ENV set to the setting's folder roots (absolute: a job may start elsewhere; a root the setting leaves
    out stays the environment's), for this process and every process it starts (Snakemake's jobs, the warm
    trainer's children)."""
    io.export_paths(ROOTS_ENV, {name: str(folder.root.absolute()) for name, folder in setting_folders(config).items() if folder.root})


def exported_roots() -> dict[str, str]:
    return io.exported_paths(ROOTS_ENV, "image folder names to their roots", DatasetError)


def exported_root(name: str) -> Path:
    """The root of the setting's image folder `name`, as this process was given it; else an error naming the key."""
    roots = exported_roots()
    if name not in roots:
        said = f"names only {', '.join(sorted(roots)) or 'no folder'}" if os.environ.get(ROOTS_ENV) else "is not set"
        raise DatasetError(f"image folder {name!r}: this process does not know its root ({ROOTS_ENV} {said}); the "
                           f"Snakefile, `kdrepro train RUN --configfile SETTING` and `kdrepro search` set it from the "
                           f"setting's {root_key(name)}")
    return Path(roots[name])


def data_meta(data: Any) -> DatasetMeta | None:
    """The facts of a run spec's data (kdrepro.graph.Data); for an image folder, where this process knows its
    root (the spec's, else ROOTS_ENV's; None where it does not: the folder is checked where it is known)."""
    if data.fingerprint is None:
        return dataset_meta(data.dataset, data.root)
    root = data.root or exported_roots().get(data.dataset)
    return folder_meta(Path(root), data.dataset, data.channels, data.fingerprint) if root else None
