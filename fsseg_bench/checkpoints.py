"""Checkpoint files: our own format, and plain state dicts such as the papers' released snapshots."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .contenthash import file_sha256  # noqa: F401 (re-exported: callers hash checkpoints through here)
from .errors import InputError

CHECKPOINT_FORMAT = "fsseg-bench-checkpoint/1"


def tensors_sha256(state_dict: dict) -> str:
    """sha256 over the names and bytes of a state dict's tensors, in order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomic: a crash mid-save never leaves a torn checkpoint behind."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> tuple[dict, dict | None]:
    """-> (state_dict, our metadata or None for a plain state dict).

    A DataParallel `module.` prefix (the PANet snapshots have one) is stripped. Everything loads
    with `weights_only` (no code runs), our own files included.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a state dict or an fsseg-bench checkpoint")
    if raw.get("format") == CHECKPOINT_FORMAT:
        state = raw.get("state_dict")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InputError(f"{path}: an fsseg-bench checkpoint without a state dict of tensors")
        recorded = raw.get("state_sha256")
        if recorded is not None and tensors_sha256(state) != recorded:
            raise InputError(f"{path}: its tensors do not match the state_sha256 it records ({str(recorded)[:12]}...): "
                             f"the file was damaged or edited; retrain it or restore the original")
        check_finite(state, path)
        return state, raw
    state = {key.removeprefix("module."): value for key, value in raw.items()}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors (a value is not a tensor)")
    check_finite(state, path)
    return state, None


def check_finite(state: dict, path) -> None:
    """A NaN or infinite weight gives NaN scores at best and plausible wrong ones at worst."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(f"{path}: tensor {key!r} holds NaN or infinite values; expected finite weights")


def load_matching(module: torch.nn.Module, state: dict, source: str) -> None:
    """Load a state dict that must cover every tensor of `module` with the same shapes."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise InputError(f"{source}: checkpoint lacks {missing[0]!r} (and {len(missing) - 1} more); "
                         f"keys here look like {next(iter(state), '<none>')!r}")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise InputError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}")
    module.load_state_dict({key: state[key] for key in expected})


# --- provenance: which run a checkpoint may serve ---------------------------------------------

PROVENANCE_KEYS = ("method", "protocol", "protocol_sha256", "dataset", "fold", "shot", "total_iterations", "config",
                   "data_sha256", "code_sha256", "weights_sha256",
                   "train_seed")


def checkpoint_provenance(path: str | Path) -> dict:
    """What a checkpoint says about how it was trained, plus its path and sha256.

    `kind` is "fsseg-bench" for our own files (trained by `fsseg-bench train`) and "external" for
    plain state dicts such as the papers' released snapshots, which carry no provenance.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    provenance = {"path": str(path.resolve()), "sha256": file_sha256(path)}
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        return {**provenance, "kind": "fsseg-bench", **{key: raw.get(key) for key in PROVENANCE_KEYS}}
    return {**provenance, "kind": "external"}


def check_checkpoint(provenance: dict, method: str, protocol, fold: int, shot: int,
                     allow_other_shot: bool = False) -> str | None:
    """Refuse a checkpoint that cannot serve this run; return a warning for one without provenance.

    A model trained on another fold has seen this fold's test classes; one trained for another
    method is another method; one trained at another shot is used only when asked for, and the
    run records it. Another protocol is accepted when it reads the same dataset (same folds), or is
    the protocol's `train_protocol` (a cross-domain source).
    """
    where = f"{provenance['path']}"
    if provenance["kind"] == "external":
        return (f"checkpoint {where} carries no provenance (a plain state dict, e.g. a paper's released "
                f"snapshot): its fold and shot cannot be checked; recorded as external")
    if provenance.get("method") != method:
        raise InputError(f"checkpoint {where} was trained for method {provenance.get('method')!r}, not {method!r}")
    if provenance.get("fold") != fold:
        raise InputError(f"checkpoint {where} was trained on fold {provenance.get('fold')}, whose base classes "
                         f"include fold {fold}'s test classes; expected a fold-{fold} checkpoint")
    from .protocol import training_protocol

    # A cross-domain protocol's models come from its source protocol (another dataset, by design).
    same_protocol = provenance.get("protocol") in (protocol.name, training_protocol(protocol).name)
    if not same_protocol and provenance.get("dataset") != protocol.dataset:
        raise InputError(f"checkpoint {where} was trained under protocol {provenance.get('protocol')!r} "
                         f"(dataset {provenance.get('dataset')!r}); this run reads dataset {protocol.dataset!r}")
    if provenance.get("shot") != shot and not allow_other_shot:
        raise InputError(f"checkpoint {where} was trained at {provenance.get('shot')} shot(s), this run is "
                         f"{shot}-shot; pass --allow-other-shot to use it anyway (recorded and marked in tables)")
    return None
