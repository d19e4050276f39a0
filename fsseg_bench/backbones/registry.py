"""The backbone registry: one entry per encoder, registered by its family's module (`cnn.py`:
PANet's VGG16, ResNet-50, the stand-in's small CNN; `vit.py`: DINOv2 / DINOv3 through timm).

An entry says how to build the module (a forward giving one feature map [B, C, h, w]), how many
channels and what stride its map has, what its published weights were pretrained on (shown in
method cards), where its weights are found locally and how they load. Nothing is ever downloaded:
weights come from `--weights PATH` or from a local cache, are read through `note_read` (so their
sha256 enters the run's identity and the feature store's key), and when none is found the entry's
`missing` rule applies: "warn" starts from a seeded random init and records `pretrained: false`;
"error" (gated checkpoints) is one line saying where to put the file. `--weights none` is the
seeded random init for any entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..contenthash import note_read
from ..errors import InputError

NO_WEIGHTS = "none"  # `--weights none`: the seeded random init, whatever the caches hold


@dataclass(frozen=True)
class Backbone:
    module: nn.Module
    name: str
    channels: int
    stride: int
    pretrained: bool
    weights_path: str | None
    pretraining: str = ""       # the data its weights were trained on ("" for a random init)
    licence: str | None = None  # the checkpoint's licence, where its files say (timm's config.json)


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    build: Callable[[], nn.Module]
    channels: int
    stride: int
    family: str                                   # "torchvision", "stand-in", "dinov2", "dinov3", ...
    pretraining: str                              # what its published weights were trained on
    find_weights: Callable[[], list[Path]]        # local candidates, best first
    load: Callable[[nn.Module, dict, str], None]  # state dict -> module; InputError naming the file
    missing: str = "warn"                         # "warn" | "error" when no weights are found
    where: str = ""                               # where its weights go, said when they are missing
    licence: Callable[[Path], str | None] = lambda path: None
    description: str = ""


BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry) -> BackboneEntry:
    if entry.missing not in ("warn", "error"):
        raise ValueError(f"backbone {entry.name!r}: missing must be 'warn' or 'error'")
    BACKBONES[entry.name] = entry
    return entry


def backbone_names() -> tuple[str, ...]:
    return tuple(sorted(BACKBONES))


def backbone_entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        import difflib

        close = difflib.get_close_matches(name, BACKBONES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"backbone {name!r}: expected one of {', '.join(backbone_names())}{hint}")
    return BACKBONES[name]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    note_read("weights", path)  # identified by content in the run and the feature store
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"{path}: unreadable weights file ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict")
    return state


def torch_cache_candidates(prefix: str) -> list[Path]:
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return sorted(checkpoints.glob(f"{prefix}-*.pth")) if checkpoints.is_dir() else []


def hf_cache_candidates(repository: str) -> list[Path]:
    """`model.safetensors` of a Hugging Face hub repository (a glob: `timm/resnet50*`) in the local
    cache (`HF_HOME` or ~/.cache/huggingface), in path order; never fetched."""
    import os

    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = home / "hub"
    folder = "models--" + repository.replace("/", "--")
    found = list(hub.glob(f"{folder}/snapshots/*/model.safetensors")) if hub.is_dir() else []
    return sorted(found)


def warn_not_pretrained(name: str, looked: str) -> None:
    from ..console import warn

    if name.startswith("smallcnn"):  # the stand-in's small CNN: its weights come with the package
        warn(f"backbone {name!r} without its stand-in pretraining ({looked}): it starts from a seeded random "
             "init and results record pretrained: false")
    else:
        warn(f"no pretrained weights for backbone {name!r} ({looked}); it is RANDOMLY initialised and results "
             f"record pretrained: false. Pass --weights PATH to use pretrained weights.")


def build_backbone(name: str, weights: str | Path | None = None, seed: int = 0) -> Backbone:
    """Build a registered backbone; its random init uses a forked RNG seeded by `seed`, never the
    global stream. Weights: `weights` (a path, or "none"), else the entry's local candidates."""
    entry = backbone_entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = entry.build()
    explicit_none = weights is not None and str(weights) == NO_WEIGHTS
    if explicit_none:
        candidates = []
    elif weights is not None:
        candidates = [Path(weights)]
    else:
        candidates = entry.find_weights()
    if not candidates:
        if not explicit_none and entry.missing == "error":
            raise InputError(f"backbone {name!r}: no weights found; {entry.where} (or the weights value 'none' for a "
                             f"random init)")
        looked = f"weights={NO_WEIGHTS}" if explicit_none else (entry.where or "none given and none cached")
        warn_not_pretrained(name, looked)
        return Backbone(module, name, entry.channels, entry.stride, False, None)
    path = candidates[0]
    entry.load(module, read_state_dict(path), str(path))
    return Backbone(module, name, entry.channels, entry.stride, True, str(path), entry.pretraining, entry.licence(path))
