"""Class names and fold splits, PASCAL-5i by default (classes numbered 1..20); every function
takes another `datasets.Dataset` (COCO-20i, FSS-1000, the stand-in) as `dataset`."""

from .datasets import PASCAL_VOC, VOC_CLASSES, Dataset

NUM_CLASSES = len(VOC_CLASSES)
NUM_FOLDS = 4
BACKGROUND = 0


def fold_test_classes(fold: int, dataset: Dataset = PASCAL_VOC) -> list[int]:
    """PASCAL-5i: fold i tests classes 5i+1 .. 5i+5 (VOC numbering)."""
    return dataset.fold_test_classes(fold)


def fold_train_classes(fold: int, dataset: Dataset = PASCAL_VOC) -> list[int]:
    """The base classes a fold trains on (15 for PASCAL-5i)."""
    return dataset.fold_train_classes(fold)


def class_name(class_id: int, dataset: Dataset = PASCAL_VOC) -> str:
    return dataset.class_name(class_id)


def class_names(dataset: "str | Dataset" = "pascal-voc") -> dict[int, str]:
    """{class id: name}: VOC's names for VOC data, COCO's for COCO, what each synthetic class looks
    like for the stand-in (VOC names there would mislead a reader), FSS-1000's folder names."""
    from .datasets import coco_dataset, synthetic_dataset

    if isinstance(dataset, str):
        if dataset not in ("pascal-voc", "synthetic5i", "coco"):
            raise ValueError(f"dataset {dataset!r}: its class names come from its data (pass a datasets.Dataset)")
        dataset = {"synthetic5i": synthetic_dataset, "coco": coco_dataset}.get(dataset, lambda: PASCAL_VOC)()
    return {c: dataset.class_name(c) for c in range(1, dataset.num_classes + 1)}
