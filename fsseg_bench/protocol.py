"""Protocol files: one TOML file per evaluation convention, loaded into a frozen dataclass.

Every key is validated; an unknown key or a bad value is a one-line `InputError` naming the file
and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .datasets import SPLIT_SCHEMES
from .errors import InputError
from .paths import PROTOCOLS_DIR

SCORE_AT = ("resized", "original", "original-square")
SUPPORT_IGNORE = ("background", "ignore")
QUERY_IGNORE = ("ignore", "background")
RESIZE_MODES = ("stretch", "longer-side-pad", "longer-side-pad-floor8")
IMAGE_RESIZE = ("pil-bilinear", "cv2-bilinear", "cv2-bilinear-u8")
NORMALISE = ("unit-range", "pixel-range")
LABEL_RESIZE = ("pil-nearest", "torch-nearest", "cv2-nearest")
IMAGE_PADDING = ("mean", "black")
MIOU_METRICS = ("miou", "miou_panet_metric")
FBIOU_METRICS = ("fbiou", "fbiou_panet_metric")
NOVEL_IN_TRAINING = ("relabel", "drop")
TRAINING_CLASSES = ("base", "all")
# Protocol names become folder names under results/runs: a safe slug, never a path or a glob.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
PIN_KEY_PATTERN = re.compile(r"fold\d+-shot\d+-seed\d+")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
# Bounds that catch a typo before it allocates: a 4096-px side is 200 MB a float image; ten million
# episodes is 10x the largest published protocol.
MAX_IMAGE_SIDE = 4096
MAX_EPISODES = 10_000_000


@dataclass(frozen=True)
class TrainingSchedule:
    """Episodic training schedule (PANet's on PASCAL; a short one on the synthetic data)."""

    episodes: int = 30000
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[int, ...] = (10000, 20000)
    lr_gamma: float = 0.1
    flip: bool = True
    seed: int = 1234
    checkpoint_every: int = 1000
    # "base": the fold's base classes (few-shot training); "all": every class of the dataset, the
    # source-domain training of cross-domain protocols (PATNet's --fold 4 on PASCAL).
    classes: str = "base"


@dataclass(frozen=True)
class Protocol:
    name: str
    dataset: str
    split: str
    train_split: str
    folds: tuple[int, ...]
    shots: tuple[int, ...]
    episodes: int
    seeds: tuple[int, ...]
    query_sampling: str
    image_size: tuple[int, int]
    score_at: str
    min_fg_pixels: int = 0
    ignore_index: int = 255
    support_ignore: str = "background"
    query_ignore: str = "ignore"         # the query label's void pixels: left out of the counts, or background
    resize: str = "stretch"
    image_resize: str = "pil-bilinear"   # how images are resampled (PIL, or OpenCV's INTER_LINEAR as PFENet)
    label_resize: str = "pil-nearest"    # how labels are resampled (PIL, torch's F.interpolate as HSNet, OpenCV)
    normalise: str = "unit-range"        # (x/255 - mean)/std, or PFENet's (x - 255 mean)/(255 std)
    image_padding: str = "mean"          # padding of longer-side-pad inputs: 0 after (mean) or before (black) normalising
    miou_metric: str = "miou"            # the mIoU tables show: class-pooled, or PANet's Metric
    fbiou_metric: str = "fbiou"          # the FB-IoU tables show: pooled over every episode, or PANet's get_mIoU_binary
    original_lists: str = ""             # where an *-original sampler finds the original lists (relative: to VOC2012/)
    split_scheme: str = "interleaved"    # COCO-20i's folds: interleaved (HSNet, PFENet) or contiguous (PANet)
    novel_in_training: str = "relabel"
    backbone: str = "vgg16"
    # A cross-domain protocol's models are trained under another protocol (its dataset, split and
    # schedule): its name or path. "" trains on this protocol's own data.
    train_protocol: str = ""
    description: str = ""
    episode_sha256: dict[str, str] = field(default_factory=dict)
    training: TrainingSchedule = field(default_factory=TrainingSchedule)
    # Provenance: the file it came from and its identity (the sha256 of its bytes; with `extends`,
    # of the bytes of every file of the chain), the chain's files and their own sha256, itself first.
    path: str = ""
    file_sha256: str = ""
    chain: tuple[str, ...] = ()
    chain_sha256: tuple[str, ...] = ()

    def pinned_sha256(self, fold: int, shot: int, seed: int) -> str | None:
        return self.episode_sha256.get(episode_key(fold, shot, seed))


def training_protocol(protocol: Protocol) -> Protocol:
    """The protocol a protocol's models are trained under: its `train_protocol` (a built-in name or
    a path, relative to the protocol's own file), else itself."""
    if not protocol.train_protocol:
        return protocol
    given = Path(protocol.train_protocol)
    if not given.is_absolute() and protocol.path and (Path(protocol.path).parent / given).suffix == ".toml":
        beside = Path(protocol.path).parent / given
        given = beside if beside.is_file() else given
    source = load_protocol(str(given))
    if source.train_protocol:
        raise InputError(f"{protocol.path}: train_protocol {protocol.train_protocol!r} names a protocol that itself "
                         f"trains under another ({source.train_protocol!r}); expected one step")
    return source


def episode_key(fold: int, shot: int, seed: int) -> str:
    """The key of one episode list, used in file names and in `episode_sha256` pins."""
    return f"fold{fold}-shot{shot}-seed{seed}"


def list_protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOLS_DIR.glob("*.toml"))


def builtin_protocol_sha256(name: str) -> str | None:
    """sha256 of the bytes of the built-in protocol file of that name (None: no such file)."""
    path = PROTOCOLS_DIR / f"{name}.toml"
    if not NAME_PATTERN.fullmatch(name) or not path.is_file():
        return None
    from .contenthash import file_sha256

    return file_sha256(path)


def resolve_protocol_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.is_file():
            raise InputError(f"{candidate}: protocol file not found")
        return candidate
    builtin = PROTOCOLS_DIR / f"{name_or_path}.toml"
    if not builtin.is_file():
        known = ", ".join(list_protocols()) or "none"
        raise InputError(f"protocol {name_or_path!r}: not a file and not a built-in protocol (built-in: {known})")
    return builtin


def load_protocol(name_or_path: str | Path) -> Protocol:
    """A protocol file, with what it `extends` (a built-in name or a .toml path relative to it)
    read and merged: its identity (`file_sha256`) covers the bytes of every file of the chain."""
    path = resolve_protocol_path(name_or_path)
    chain = read_protocol_chain(path)
    return protocol_from_chain([blob for _, blob in chain], str(path), tuple(str(p) for p, _ in chain))


MAX_EXTENDS_DEPTH = 8
_CHAIN_TAG = b"fsseg-bench protocol chain 1\n"


def protocol_chain_sha256(file_sha256s: list[str]) -> str:
    """The identity of a protocol read from several files, itself first: the file's own sha256 for
    one file (so a protocol without `extends` keeps the sha256 of its bytes)."""
    if len(file_sha256s) == 1:
        return file_sha256s[0]
    return hashlib.sha256(_CHAIN_TAG + "\n".join(file_sha256s).encode()).hexdigest()


def _parse_toml(blob: bytes, source: str) -> dict:
    try:
        return tomllib.loads(blob.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not valid TOML ({exc})") from None


def _parent_path(child: Path, parent) -> Path:
    """`extends` = a built-in protocol name, or a .toml path (relative: to the extending file)."""
    if not isinstance(parent, str) or not parent:
        raise _fail(str(child), "extends", "a built-in protocol name or a .toml path", parent)
    if parent.endswith(".toml") or "/" in parent:
        candidate = Path(parent) if Path(parent).is_absolute() else child.parent / parent
        if not candidate.is_file():
            raise InputError(f"{child}: key 'extends' = {parent!r}: {candidate}: protocol file not found")
        return candidate
    builtin = PROTOCOLS_DIR / f"{parent}.toml"
    if not NAME_PATTERN.fullmatch(parent) or not builtin.is_file():
        raise InputError(f"{child}: key 'extends' = {parent!r}: not a built-in protocol "
                         f"(built-in: {', '.join(list_protocols())}); give a .toml path for a file")
    return builtin


def read_protocol_chain(path: Path) -> list[tuple[Path, bytes]]:
    """(file, bytes) of a protocol and of each protocol it extends, itself first."""
    chain, seen, current = [], set(), Path(path)
    while True:
        if current.resolve() in seen:
            raise InputError(f"{path}: key 'extends' forms a cycle through {current}")
        seen.add(current.resolve())
        blob = current.read_bytes()
        chain.append((current, blob))
        parent = _parse_toml(blob, str(current)).get("extends")
        if parent is None:
            return chain
        if len(chain) > MAX_EXTENDS_DEPTH:
            raise InputError(f"{path}: key 'extends' nests more than {MAX_EXTENDS_DEPTH} protocols deep")
        current = _parent_path(current, parent)


def merge_protocol_chain(raws: list[dict], source: str) -> dict:
    """The keys of a protocol over those of what it extends (itself first in `raws`). `[training]`
    merges key by key; `episode_sha256` pins are never inherited (a pin belongs to the bytes that
    drew its list), and a protocol that extends another names itself."""
    if len(raws) > 1 and "name" not in raws[0]:
        raise InputError(f"{source}: a protocol that extends another needs its own 'name'")
    merged: dict = {}
    for raw in reversed(raws):  # from the root down
        for key, value in raw.items():
            if key == "extends":
                continue
            if key == "training" and isinstance(value, dict) and isinstance(merged.get("training"), dict):
                merged["training"] = {**merged["training"], **value}
            else:
                merged[key] = value
    merged.pop("episode_sha256", None)
    if "episode_sha256" in raws[0]:
        merged["episode_sha256"] = raws[0]["episode_sha256"]
    return merged


def protocol_from_chain(blobs: list[bytes], source: str, files: tuple[str, ...] = ()) -> Protocol:
    """The protocol the bytes of a chain of files make (itself first), identified by all of them."""
    raws = [_parse_toml(blob, files[k] if k < len(files) else source) for k, blob in enumerate(blobs)]
    raw = merge_protocol_chain(raws, source) if len(raws) > 1 else raws[0]
    if len(raws) == 1 and "extends" in raw:
        raise InputError(f"{source}: key 'extends' without the file it names")
    sha256s = [hashlib.sha256(blob).hexdigest() for blob in blobs]
    protocol = parse_protocol({k: v for k, v in raw.items() if k != "extends"}, source=source,
                              file_sha256=protocol_chain_sha256(sha256s))
    return dataclasses.replace(protocol, chain=files or (source,), chain_sha256=tuple(sha256s))


# --- validation -------------------------------------------------------------------------------

def _fail(source: str, key: str, expected: str, value) -> InputError:
    return InputError(f"{source}: key {key!r} = {value!r}: expected {expected}")


def _str(source, raw, key, choices=None, default=None):
    if key not in raw:
        if default is None:
            raise InputError(f"{source}: missing required key {key!r}")
        return default
    value = raw[key]
    if not isinstance(value, str) or not value:
        raise _fail(source, key, "a non-empty string", value)
    if choices is not None and value not in choices:
        raise _fail(source, key, "one of " + " | ".join(choices), value)
    return value


def _optional_str(source, raw, key) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise _fail(source, key, "a string", value)
    return value


def query_sampling_modes() -> tuple[str, ...]:
    from .sampling import sampler_names  # the samplers register themselves; imported late (they use episodes)

    return sampler_names()


def _int(source, raw, key, minimum=0, default=None):
    if key not in raw:
        if default is None:
            raise InputError(f"{source}: missing required key {key!r}")
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(source, key, f"an integer >= {minimum}", value)
    return value


def _bounded_int(source, raw, key, minimum, maximum):
    value = _int(source, raw, key, minimum=minimum)
    if value > maximum:
        raise _fail(source, key, f"an integer in {minimum}..{maximum}", value)
    return value


def _float(source, raw, key, default):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _fail(source, key, "a finite non-negative number", value)
    return float(value)


def _name(source, raw) -> str:
    name = _str(source, raw, "name")
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise _fail(source, "name", "a slug of a-z, 0-9, '.', '_' and '-' (it names a results folder)", name)
    return name


def _description(source, raw) -> str:
    value = raw.get("description", "")
    if not isinstance(value, str):
        raise _fail(source, "description", "a string", value)
    return value


def dataset_names() -> tuple[str, ...]:
    from .data.registry import dataset_names as registered

    return registered()


def _dataset_folds(name) -> int:
    """The folds a protocol may name: its dataset's (4 when the dataset is unknown: that error comes first)."""
    from .data.registry import DATASETS, dataset_names as registered

    registered()
    return DATASETS[name].folds if name in DATASETS else 4


def _backbone(source, raw) -> str:
    from .backbones import backbone_names
    from .pyramids import PYRAMIDS

    return _str(source, raw, "backbone", tuple(sorted(set(backbone_names()) | set(PYRAMIDS))), default="vgg16")


def _pins(source, raw) -> dict[str, str]:
    pins = raw.get("episode_sha256", {})
    expected = 'a table of "foldF-shotK-seedS" = "<64 lowercase hex digits>"'
    if not isinstance(pins, dict):
        raise _fail(source, "episode_sha256", expected, pins)
    for key, value in pins.items():
        if not PIN_KEY_PATTERN.fullmatch(key):
            raise _fail(source, f"episode_sha256.{key}", 'a key of the form "foldF-shotK-seedS"', value)
        if not isinstance(value, str) or not SHA256_PATTERN.fullmatch(value):
            raise _fail(source, f"episode_sha256.{key}", "64 lowercase hex digits", value)
    return dict(pins)


def _int_list(source, raw, key, minimum=0, allowed=None, default=None, length=None, maximum=None):
    if key not in raw:
        if default is None:
            raise InputError(f"{source}: missing required key {key!r}")
        return tuple(default)
    value = raw[key]
    ok = isinstance(value, list) and len(value) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
    )
    if ok and allowed is not None:
        ok = all(v in allowed for v in value)
    if ok and maximum is not None:
        ok = all(v <= maximum for v in value)
    if ok and length is not None:
        ok = len(value) == length
    if ok and length is None:
        ok = len(set(value)) == len(value)
    if not ok:
        what = f"a list of {length} " if length else "a non-empty list of distinct "
        what += (f"integers in {sorted(allowed)}" if allowed is not None else f"integers in {minimum}..{maximum}"
                 if maximum is not None else f"integers >= {minimum}")
        raise _fail(source, key, what, value)
    return tuple(value)


_TOP_KEYS = ({f.name for f in dataclasses.fields(Protocol)} - {"path", "file_sha256", "chain", "chain_sha256"}
             | {"extends"})
_TRAINING_KEYS = {f.name for f in dataclasses.fields(TrainingSchedule)}


def parse_protocol(raw: dict, source: str = "<protocol>", file_sha256: str = "") -> Protocol:
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(_TOP_KEYS))})")
    ignore_index = _int(source, raw, "ignore_index", default=255)
    if ignore_index > 255:
        raise _fail(source, "ignore_index", "an integer in 0..255 (a label value)", ignore_index)
    protocol = Protocol(
        name=_name(source, raw),
        dataset=_str(source, raw, "dataset", dataset_names()),
        split=_str(source, raw, "split"),
        train_split=_str(source, raw, "train_split"),
        folds=_int_list(source, raw, "folds", allowed=set(range(_dataset_folds(raw.get("dataset"))))),
        shots=_int_list(source, raw, "shots", minimum=1),
        episodes=_bounded_int(source, raw, "episodes", 1, MAX_EPISODES),
        seeds=_int_list(source, raw, "seeds"),
        query_sampling=_str(source, raw, "query_sampling", query_sampling_modes()),
        image_size=_int_list(source, raw, "image_size", minimum=8, length=2, maximum=MAX_IMAGE_SIDE),
        score_at=_str(source, raw, "score_at", SCORE_AT),
        min_fg_pixels=_int(source, raw, "min_fg_pixels", default=0),
        ignore_index=ignore_index,
        support_ignore=_str(source, raw, "support_ignore", SUPPORT_IGNORE, default="background"),
        query_ignore=_str(source, raw, "query_ignore", QUERY_IGNORE, default="ignore"),
        resize=_str(source, raw, "resize", RESIZE_MODES, default="stretch"),
        image_resize=_str(source, raw, "image_resize", IMAGE_RESIZE, default="pil-bilinear"),
        label_resize=_str(source, raw, "label_resize", LABEL_RESIZE, default="pil-nearest"),
        image_padding=_str(source, raw, "image_padding", IMAGE_PADDING, default="mean"),
        normalise=_str(source, raw, "normalise", NORMALISE, default="unit-range"),
        miou_metric=_str(source, raw, "miou_metric", MIOU_METRICS, default="miou"),
        fbiou_metric=_str(source, raw, "fbiou_metric", FBIOU_METRICS, default="fbiou"),
        original_lists=_optional_str(source, raw, "original_lists"),
        split_scheme=_str(source, raw, "split_scheme", SPLIT_SCHEMES, default="interleaved"),
        novel_in_training=_str(source, raw, "novel_in_training", NOVEL_IN_TRAINING, default="relabel"),
        backbone=_backbone(source, raw),
        train_protocol=_optional_str(source, raw, "train_protocol"),
        description=_description(source, raw),
        episode_sha256=_pins(source, raw),
        training=_parse_training(raw.get("training", {}), source),
        path=source,
        file_sha256=file_sha256,
    )
    _check_geometry(protocol, source)
    return protocol


def _check_geometry(protocol: Protocol, source: str) -> None:
    """Keys that only make sense together (PFENet's square scoring assumes a square, padded input)."""
    if protocol.score_at == "original-square":
        if protocol.resize == "stretch" or protocol.image_size[0] != protocol.image_size[1]:
            raise _fail(source, "score_at", "'original-square' only with a longer-side-pad resize and a square "
                        "image_size", protocol.score_at)


def _parse_training(raw, source: str) -> TrainingSchedule:
    if not isinstance(raw, dict):
        raise _fail(source, "training", "a table", raw)
    unknown = sorted(set(raw) - _TRAINING_KEYS)
    if unknown:
        raise InputError(f"{source}: unknown key 'training.{unknown[0]}' (known: {', '.join(sorted(_TRAINING_KEYS))})")
    src = f"{source} [training]"
    default = TrainingSchedule()
    flip = raw.get("flip", default.flip)
    if not isinstance(flip, bool):
        raise _fail(src, "flip", "true or false", flip)
    milestones = raw.get("lr_milestones", list(default.lr_milestones))
    if not isinstance(milestones, list) or not all(isinstance(m, int) and m > 0 for m in milestones):
        raise _fail(src, "lr_milestones", "a list of positive integers", milestones)
    return TrainingSchedule(
        episodes=_int(src, raw, "episodes", minimum=1, default=default.episodes),
        lr=_float(src, raw, "lr", default.lr),
        momentum=_float(src, raw, "momentum", default.momentum),
        weight_decay=_float(src, raw, "weight_decay", default.weight_decay),
        lr_milestones=tuple(milestones),
        lr_gamma=_float(src, raw, "lr_gamma", default.lr_gamma),
        flip=flip,
        seed=_int(src, raw, "seed", default=default.seed),
        checkpoint_every=_int(src, raw, "checkpoint_every", minimum=1, default=default.checkpoint_every),
        classes=_str(src, raw, "classes", TRAINING_CLASSES, default=default.classes),
    )
