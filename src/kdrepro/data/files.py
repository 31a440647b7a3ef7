"""What a folder of data files holds, hashed once per version of its files (no torch: settings use it).

A folder's contents digest (each file's relative path and the sha256 of its bytes) costs reading every
byte; it is computed once per (path, size, modification time) of its files: a stamp file, named by the
hash of those stats, keeps it. An unchanged folder then costs a few stat calls, a copy of the same files
elsewhere (another root, a symlink resolved to another path) is hashed once and gives the same digest, and
a changed file gives another stamp and is hashed afresh. kdrepro.data.sources keys its tensor cache on it;
kdrepro.data.folders fingerprints a user's image folder with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from kdrepro.io import WriteError, save_text
from kdrepro.paths import USER_CACHE

STAMPS = USER_CACHE / "tensors" / "stamps"  # stamp files (see the module's docstring)


def source_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def stamp_key(name: str, files: list[Path]) -> str:
    """The hash of the files as they are stamped now: resolved path, size, modification time."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([name, stats]).encode()).hexdigest()[:32]


def stamped(stamps: Path, name: str, files: list[Path], compute: Callable[[], str]) -> str:
    """`compute()` for these files, remembered in `stamps` under their stamp (computed once per version of them)."""
    stamp = stamps / f"{stamp_key(name, files)}.txt"
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


def contents_digest(root: Path, files: list[Path], stamps: Path = STAMPS) -> str:
    """sha256 over each file's path relative to `root` and the sha256 of its bytes, in the given order;
    computed once per version of the files (the stamps under `stamps/contents`)."""

    def compute() -> str:
        digest = hashlib.sha256()
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    # the stamp names the relative paths too: the same files listed under another root hash otherwise
    relative = [str(p.relative_to(root)) for p in files]
    return stamped(stamps / "contents", json.dumps(relative), files, compute)
