"""Plain output files written atomically: a reader (a table, a later job, a resumed run) never sees half a file.

The engine writes its runs' metrics and epochs through these, the search its results, the report layer its
tables, figures and claims; torch checkpoints add their own format on top (kdrepro.engine.checkpoint).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


class WriteError(RuntimeError):
    """An output cannot be written (no space, a read-only folder, a file-size limit); names file and cause."""


# why a write failed, in words, for the errors that a user can do something about
WRITE_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file would exceed the file-size limit (ulimit -f)",
}


def write_error(path: Path, err: OSError) -> WriteError:
    cause = WRITE_CAUSES.get(err.errno, err.strerror or str(err))
    return WriteError(f"cannot write {path}: {cause}; fix that and run again (finished outputs are kept, "
                      "and a run continues from its last finished epoch)")


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write, keep_previous: Path | None = None) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.
    `keep_previous`: the file that `path` held is renamed there once the new one is complete. An
    OSError (no space, read-only, too large) becomes a WriteError naming `path`; `path` is untouched."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from the user's group
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(path, err) from None
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in `folder`; only safe while no other
    process writes there (a run holds its lock)."""
    stale = sorted(folder.glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def file_lock(path: Path, waiting: str = "") -> Iterator[None]:
    """An exclusive lock between processes on this machine (and NFS with working locks), released by
    the kernel when its holder dies. If another process holds it, print `waiting` (if any) and wait."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as err:
        raise write_error(path, err) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(f"[kdrepro] {waiting}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


# ---- name -> path maps handed to every process a command starts ------------------------------------
def export_paths(variable: str, paths: dict[str, str]) -> None:
    """`variable` set to the name -> path map as JSON, for this process and every process it starts (Snakemake's
    jobs, the warm trainer's children): a spec names data or weights by content, and the jobs find them here."""
    os.environ[variable] = json.dumps(paths, sort_keys=True)


def exported_paths(variable: str, what: str, error: type[Exception]) -> dict[str, str]:
    """The name -> path map in `variable` ({} where unset); `error` naming `what` it must map where it is not one."""
    text = os.environ.get(variable)
    if not text:
        return {}
    try:
        paths = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{variable} is not valid JSON ({err}): it must map {what}") from None
    if not isinstance(paths, dict):
        raise error(f"{variable} must map {what}, got {text!r}")
    return paths
