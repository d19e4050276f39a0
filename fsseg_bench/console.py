"""What the user sees on the terminal: progress bars only where there is a terminal, plain lines
elsewhere, and each warning said once per invocation.

Warnings raised inside a run (possibly in a worker process) are collected with the run's outcome
and said by the process that reports outcomes, so N workers still print a warning once.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

_SAID: set[str] = set()
_COLLECTING: list[list[str]] = []


def interactive(stream=None) -> bool:
    """True when `stream` (default stderr) is a terminal that can redraw a progress bar."""
    stream = stream or sys.stderr
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def say(text: str, bars: bool) -> None:
    """A line on stderr: through tqdm while bars are drawn (so they are not torn), else plainly."""
    if bars:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Say `message` once in this invocation (or hand it to the enclosing `collected()` block)."""
    if _COLLECTING:
        if message not in _COLLECTING[-1]:
            _COLLECTING[-1].append(message)
        return
    if message not in _SAID:
        _SAID.add(message)
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def new_invocation() -> None:
    """A command (or an API call) starts: its warnings are said once each, again."""
    _SAID.clear()


@contextmanager
def collected():
    """Collect the warnings of a block instead of printing them; yields the list."""
    bucket: list[str] = []
    _COLLECTING.append(bucket)
    try:
        yield bucket
    finally:
        _COLLECTING.pop()


@contextmanager
def silenced():
    """Drop the warnings of a block (e.g. a backbone's random init that a checkpoint then replaces)."""
    with collected():
        yield


def rate_text(per_second: float) -> str:
    """A rate to 3 significant digits, never in e-notation (2850000, 12.3, 0.0456)."""
    rounded = float(f"{per_second:.3g}")
    return f"{rounded:.0f}" if abs(rounded) >= 100 else f"{rounded:.3g}"
