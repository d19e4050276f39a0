"""The dataset registry: a dataset is one module that registers its definition (classes, folds),
its reader (a tree with the tree interface of `data/voc.py`) and its stand-in writer.

Built in: `pascal-voc` (`voc.py`), `synthetic5i` (`synthetic.py`), `coco` (`coco.py`), `fss1000`
(`fss.py`), and PATNet's cross-domain sets `deepglobe` (`deepglobe.py`), `isic` (`isic.py`) and
`chestxray` (`chestxray.py`). A protocol's `dataset` names an entry; everything after the tree
(class index, samplers, preprocessing, scoring, tables) reads the tree only through its interface.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError

BUILTIN_MODULES = ("voc", "synthetic", "coco", "fss", "deepglobe", "isic", "chestxray")


@dataclass(frozen=True)
class DatasetEntry:
    name: str                                      # what a protocol's `dataset` says
    title: str                                     # what it reads, in messages ("PASCAL VOC 2012 (+SBD)")
    folds: int                                     # how many folds a protocol may name
    locate: Callable[[Path], object]               # the reader: data root -> tree (accepts the folder or a parent)
    definition: Callable[[object, object], object]  # (protocol, tree or None) -> datasets.Dataset
    layout: str = ""                               # `synth --layout` name of its stand-in ("" if none)
    write_standin: Callable[..., Path] | None = None  # (root, seed, images or None) -> the tree's folder
    classes_from_data: bool = False                # the class list is the data's (needs the tree)
    default_tree: Callable[[Path], Path] | None = None  # results dir -> a generated tree (synthetic5i), else None


DATASETS: dict[str, DatasetEntry] = {}
_LOADED = False


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    DATASETS[entry.name] = entry
    return entry


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in BUILTIN_MODULES:
            importlib.import_module(f"{__package__}.{module}")


def dataset_names() -> tuple[str, ...]:
    _load_builtin()
    return tuple(DATASETS)


def dataset_entry(name: str) -> DatasetEntry:
    _load_builtin()
    if name not in DATASETS:
        raise InputError(f"dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def standin_layouts() -> dict[str, DatasetEntry]:
    """`synth --layout` names -> the entry whose stand-in they write."""
    _load_builtin()
    return {entry.layout: entry for entry in DATASETS.values() if entry.layout and entry.write_standin}
