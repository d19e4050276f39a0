"""What a results file records about the software and machine that produced it."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache

from .. import __version__
from ..paths import REPO_ROOT


@lru_cache(maxsize=1)
def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)

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
    import numpy
    import timm
    import torch

    return {"harness_version": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
            "git": git_state()}
