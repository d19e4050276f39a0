"""Reading the text files users hand us (split lists, original lists, episode dumps): one-line
errors that name the file and say what was expected."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError


def read_utf8(path: str | Path, what: str) -> str:
    """The file's text; `what` names it in the error ("image list for split 'val'", ...)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: {what} is unreadable ({exc.strerror})") from None
