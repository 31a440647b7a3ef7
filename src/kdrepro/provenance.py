"""Which code produced a result: the git commit of the checkout the package runs from, so that every
committed results/<setting>/ names the commit to check it out at (with its runs' config hashes and kernels)."""

from __future__ import annotations

import functools
import subprocess

from kdrepro.paths import REPO

# what a run's numbers depend on besides its spec: the package, its workflow and its experiment files
SOURCE_PATHS = ("src", "workflow", "config")


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)


@functools.cache
def source_commit() -> str | None:
    """The commit of the package's checkout, with "-dirty" when its source, workflow or config files differ
    from that commit (edited, or new and not ignored); None outside a git checkout (an installed wheel: the package version names it)."""
    try:
        head = _git("rev-parse", "--verify", "HEAD")
    except OSError:  # no git on this machine
        return None
    if head.returncode != 0:
        return None
    dirty = bool(_git("status", "--porcelain", "--", *SOURCE_PATHS).stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")
