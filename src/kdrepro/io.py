"""Plain output files written atomically: a reader (a table, a later job, a resumed run) never sees half a file.

The engine writes its runs' metrics and epochs through these, the search its results, the report layer its
tables, figures and claims; torch checkpoints add their own format on top (kdrepro.engine.checkpoint).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))
