"""Datasets: what a benchmark's classes are and how its folds split them.

A dataset definition is data, not code paths: its class names, its number of folds and, per fold,
the test (novel) classes; the base classes are the others that the fold trains on. Class ids run
1..num_classes, as in the masks (0 background, 255 void). Each data layout (`data/voc.py`,
`data/coco.py`, `data/fss.py`) reads a tree into class-index labels with these ids, so the class
index, the episode lists, the runner, the metrics and the tables work for all of them unchanged.

- `pascal-voc`: 20 classes, 4 folds of 5 consecutive classes (PASCAL-5i).
- `synthetic5i`: the stand-in in VOC's formats and folds, with names saying what each class looks like.
- `coco`: 80 classes in 4 folds of 20, `interleaved` (fold f tests classes f+1, f+5, ..., f+77:
  HSNet, PFENet/BAM with `use_split_coco`) or `contiguous` (1-20, 21-40, ...: PANet), set by the
  protocol's `split_scheme`.
- `fss1000`: one fold; the classes are the data's own (folder names) and the fold's test classes
  are those of the test split file (HSNet: 240 test classes, 520 to train on).
- `deepglobe`, `isic`, `chestxray`: PATNet's cross-domain test sets, one fold testing every class.

Which reader serves a dataset, and its stand-in, is the dataset registry's (`data/registry.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

SPLIT_SCHEMES = ("interleaved", "contiguous")


@dataclass(frozen=True)
class Dataset:
    """Classes 1..len(class_names); `test_classes[f]` are fold f's novel classes."""

    name: str
    class_names: tuple[str, ...]
    test_classes: tuple[tuple[int, ...], ...]
    layout: str  # the reader's layout ("voc", "coco", "fss1000", or the dataset's own name)
    split_scheme: str | None = None
    notes: dict = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_folds(self) -> int:
        return len(self.test_classes)

    def fold_test_classes(self, fold: int) -> list[int]:
        if fold not in range(self.num_folds):
            raise ValueError(f"fold {fold!r}: {self.name} has folds 0..{self.num_folds - 1}")
        return list(self.test_classes[fold])

    def fold_train_classes(self, fold: int) -> list[int]:
        test = set(self.fold_test_classes(fold))
        return [c for c in range(1, self.num_classes + 1) if c not in test]

    def class_name(self, class_id: int) -> str:
        return self.class_names[class_id - 1]


def consecutive_folds(num_classes: int, folds: int) -> tuple[tuple[int, ...], ...]:
    size = num_classes // folds
    return tuple(tuple(range(size * f + 1, size * f + size + 1)) for f in range(folds))


def interleaved_folds(num_classes: int, folds: int) -> tuple[tuple[int, ...], ...]:
    """Fold f: classes f+1, f+1+folds, ... (1-based)."""
    return tuple(tuple(range(f + 1, num_classes + 1, folds)) for f in range(folds))


PASCAL_VOC = Dataset("pascal-voc", VOC_CLASSES, consecutive_folds(20, 4), "voc")


def synthetic_dataset() -> Dataset:
    from .data.synthetic import synthetic_class_name

    return Dataset("synthetic5i", tuple(synthetic_class_name(c) for c in range(1, 21)), consecutive_folds(20, 4), "voc")


def coco_dataset(split_scheme: str = "interleaved") -> Dataset:
    if split_scheme not in SPLIT_SCHEMES:
        raise ValueError(f"split_scheme {split_scheme!r}: expected one of {', '.join(SPLIT_SCHEMES)}")
    folds = interleaved_folds(80, 4) if split_scheme == "interleaved" else consecutive_folds(80, 4)
    return Dataset("coco", COCO_CLASSES, folds, "coco", split_scheme)


def fss1000_dataset(class_names: tuple[str, ...], test_names: tuple[str, ...]) -> Dataset:
    """Classes numbered by their position in `class_names` (sorted folder names); one fold testing
    `test_names`."""
    position = {name: i + 1 for i, name in enumerate(class_names)}
    return Dataset("fss1000", tuple(class_names), (tuple(sorted(position[n] for n in test_names)),), "fss1000")




def single_fold_dataset(name: str, class_names: tuple[str, ...]) -> Dataset:
    """A cross-domain test set (PATNet's): one fold that tests every class; nothing is trained on it."""
    return Dataset(name, tuple(class_names), (tuple(range(1, len(class_names) + 1)),), name)
