"""What a results file records about the software and machine that produced it."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache

from .. import __version__
from ..paths import IN_CHECKOUT, REPO_ROOT


@lru_cache(maxsize=1)
def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)

    if not IN_CHECKOUT:  # an installed wheel: its version (harness_version) is the record
        return {"commit": None, "dirty": None}
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@lru_cache(maxsize=1)
def software() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        # The installed distribution's version, without importing the package (timm takes a second).
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"harness_version": __version__, "python": platform.python_version(), "torch": installed("torch"),
            "timm": installed("timm"), "numpy": installed("numpy"), "platform": platform.platform(),
            "git": git_state()}
