"""What a folder of data files holds, hashed once per version of its files (no torch: settings use it).

A folder's contents digest (each file's relative path and the sha256 of its bytes) costs reading every
byte; it is computed once per (path, size, modification time) of its files: a stamp file, named by the
hash of those stats, keeps it. An unchanged folder then costs a few stat calls, a copy of the same files
elsewhere (another root, a symlink resolved to another path) is hashed once and gives the same digest, and
a changed file gives another stamp and is hashed afresh. kdrepro.data.sources keys its tensor cache on it;
kdrepro.data.folders fingerprints a user's image folder with it; kdrepro.teachers names an external teacher's
file by the sha256 of its bytes (file_sha256), found the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from stat import S_ISLNK
from typing import Callable

from kdrepro.io import WriteError, save_text
from kdrepro.paths import USER_CACHE

STAMPS = USER_CACHE / "tensors" / "stamps"  # stamp files (see the module's docstring)


def source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


Stat = tuple[str, int, int]  # a file's resolved path, size and modification time (ns)


def file_stats(files: list[Path]) -> list[Stat]:
    """Each file's stamp: its resolved path (each folder resolved once: a large folder costs one lstat per file,
    not one per path component), size and modification time."""
    folders: dict[Path, Path] = {}
    stats = []
    for path in files:
        if path.parent not in folders:
            folders[path.parent] = path.parent.resolve()
        stat = os.lstat(path)
        where = folders[path.parent] / path.name
        if S_ISLNK(stat.st_mode):  # a linked file: the file it names
            where, stat = path.resolve(), path.stat()
        stats.append((str(where), stat.st_size, stat.st_mtime_ns))
    return stats


def stamp_key(name: str, files: list[Path], stats: list[Stat] | None = None) -> str:
    """The hash of the files as they are stamped now (file_stats; given, or found here)."""
    return hashlib.sha256(json.dumps([name, stats if stats is not None else file_stats(files)]).encode()).hexdigest()[:32]


def stamped(stamps: Path, name: str, files: list[Path], compute: Callable[[], str], stats: list[Stat] | None = None) -> str:
    """`compute()` for these files, remembered in `stamps` under their stamp (computed once per version of them)."""
    stamp = stamps / f"{stamp_key(name, files, stats)}.txt"
    if stamp.exists():
        return stamp.read_text()
    value = compute()
    remember(value, stamp)
    return value


def remember(key: str, stamp: Path) -> None:
    """The key of these files as they are stamped now; a read-only cache only costs the hashing again."""
    try:
        save_text(key, stamp)
    except WriteError:
        return


def relative(root: Path, files: list[Path]) -> list[str]:
    """The files' paths relative to `root`, which holds them all (as strings: pathlib's relative_to is slow)."""
    prefix = len(str(root).rstrip("/")) + 1
    return [str(p)[prefix:] for p in files]


def contents_digest(root: Path, files: list[Path], stamps: Path = STAMPS, stats: list[Stat] | None = None) -> str:
    """sha256 over each file's path relative to `root` and the sha256 of its bytes, in the given order;
    computed once per version of the files (the stamps under `stamps/contents`; `stats`: their file_stats,
    where the caller has them)."""

    def compute() -> str:
        digest = hashlib.sha256()
        for name, path in zip(names, files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    # the stamp names the relative paths too: the same files listed under another root hash otherwise
    names = relative(root, files)
    return stamped(stamps / "contents", json.dumps(names), files, compute, stats)


def file_sha256(path: Path, stamps: Path = STAMPS) -> str:
    """The sha256 of one file's bytes, computed once per version of it (the stamps under `stamps/sha256`)."""
    return stamped(stamps / "sha256", "sha256", [path], lambda: hashlib.sha256(path.read_bytes()).hexdigest())
