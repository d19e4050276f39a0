"""Experiment files: what `fsseg-bench run --config exp.toml` runs, written once instead of retyped
as flags (one file per experiment, as lm-evaluation-harness keeps one config per task).

    protocol = "synthetic5i"            # a built-in name, or a .toml path relative to this file
    folds = [0, 1]                      # optional, each: default the protocol's
    shots = [1]
    seeds = [1234]
    train_seeds = [1234, 1]             # the trained models of trainable methods
    limit = 40                          # optional: first N episodes (marked in tables)
    data_root = "data"                  # optional, relative to this file
    plugins = ["mean_colour.py"]        # optional, relative to this file

    [[methods]]
    name = "knn"
    label = "knn (k=3)"                 # optional: its row label
    options = { k = 3 }                 # optional: the factory's options (as --option)
    weights = "none"                    # optional (as --weights)
    checkpoint = "ckpt/final.pt"        # optional, trainable methods (as --checkpoint)

A run's identity is what the file does, not its bytes: the requests it makes are the ones the
same flags would make, so a comment edit changes nothing and two files that ask for the same
runs share them. Every key is validated before any work (one line naming the file and key).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

TOP_KEYS = {"protocol", "folds", "shots", "seeds", "train_seeds", "limit", "data_root", "plugins", "methods"}
METHOD_KEYS = {"name", "label", "options", "weights", "checkpoint"}


@dataclass(frozen=True)
class ExperimentMethod:
    name: str
    label: str | None = None
    options: dict = field(default_factory=dict)
    weights: str | None = None
    checkpoint: str | None = None  # absolute


@dataclass(frozen=True)
class Experiment:
    path: str
    protocol: str  # a built-in name or an absolute path
    methods: tuple[ExperimentMethod, ...]
    folds: list[int] | None = None
    shots: list[int] | None = None
    seeds: list[int] | None = None
    train_seeds: list[int] | None = None
    limit: int | None = None
    data_root: str | None = None
    plugins: tuple[str, ...] = ()


def _ints(source: str, raw: dict, key: str, minimum: int = 0) -> list[int] | None:
    if key not in raw:
        return None
    value = raw[key]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)):
        raise InputError(f"{source}: key {key!r} = {value!r}: expected a non-empty list of integers >= {minimum}")
    return list(value)


def _text(source: str, raw: dict, key: str, where: str = "") -> str | None:
    if key not in raw:
        return None
    if not isinstance(raw[key], str) or not raw[key]:
        raise InputError(f"{source}: key {where}{key!r} = {raw[key]!r}: expected a non-empty string")
    return raw[key]


def _relative(base: Path, value: str | None) -> str | None:
    return None if value is None else str((base / value).resolve()) if not Path(value).is_absolute() else value


def load_experiment(path: str | Path) -> Experiment:
    """Parse and validate an experiment file; paths in it are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config {path}: experiment file not found")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    source, base = str(path), path.resolve().parent
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(TOP_KEYS))}")
    protocol = _text(source, raw, "protocol")
    if protocol is None:
        raise InputError(f"{source}: missing required key 'protocol' (a built-in name or a .toml path)")
    if protocol.endswith(".toml") or "/" in protocol:
        protocol = _relative(base, protocol)
    entries = raw.get("methods")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{source}: expected one or more [[methods]] tables (each with a name)")
    methods = []
    for position, entry in enumerate(entries, 1):
        where = f"methods[{position}]."
        unknown = sorted(set(entry) - METHOD_KEYS)
        if unknown:
            raise InputError(f"{source}: unknown key {where}{unknown[0]}; expected one of {', '.join(sorted(METHOD_KEYS))}")
        name = _text(source, entry, "name", where)
        if name is None:
            raise InputError(f"{source}: [[methods]] entry {position} has no name")
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise InputError(f"{source}: key {where}options = {options!r}: expected a table like {{ k = 3 }}")
        checkpoint = _relative(base, _text(source, entry, "checkpoint", where))
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise InputError(f"{source}: key {where}checkpoint: {checkpoint}: checkpoint not found")
        methods.append(ExperimentMethod(name, _text(source, entry, "label", where), dict(options),
                                        _text(source, entry, "weights", where), checkpoint))
    labels = [m.label or m.name for m in methods]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InputError(f"{source}: method {repeated[0]!r} appears twice without distinct labels; give each a label")
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InputError(f"{source}: key 'limit' = {limit!r}: expected a positive integer")
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise InputError(f"{source}: key 'plugins' = {plugins!r}: expected a list of file paths")
    plugins = tuple(_relative(base, p) for p in plugins)
    for plugin in plugins:
        if not Path(plugin).is_file():
            raise InputError(f"{source}: key 'plugins': {plugin}: file not found")
    return Experiment(str(path.resolve()), protocol, tuple(methods), _ints(source, raw, "folds"),
                      _ints(source, raw, "shots", 1), _ints(source, raw, "seeds"), _ints(source, raw, "train_seeds"),
                      limit, _relative(base, _text(source, raw, "data_root")), plugins)
