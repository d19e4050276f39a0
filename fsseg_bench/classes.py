"""PASCAL VOC class names and the PASCAL-5i fold split (classes numbered 1..20)."""

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
NUM_CLASSES = len(VOC_CLASSES)
NUM_FOLDS = 4
BACKGROUND = 0


def fold_test_classes(fold: int) -> list[int]:
    """Fold i tests classes 5i+1 .. 5i+5 (VOC numbering)."""
    if fold not in range(NUM_FOLDS):
        raise ValueError(f"fold {fold!r}: expected 0..{NUM_FOLDS - 1}")
    return list(range(5 * fold + 1, 5 * fold + 6))


def fold_train_classes(fold: int) -> list[int]:
    """The 15 base classes a fold trains on."""
    test = set(fold_test_classes(fold))
    return [c for c in range(1, NUM_CLASSES + 1) if c not in test]


def class_name(class_id: int) -> str:
    return VOC_CLASSES[class_id - 1]


def class_names(dataset: str = "pascal-voc") -> dict[int, str]:
    """{class id: name} for a protocol's dataset: VOC's names for VOC data, what each synthetic
    class looks like for the stand-in (VOC names there would mislead a reader)."""
    if dataset == "synthetic5i":
        from .data.synthetic import synthetic_class_name

        return {c: synthetic_class_name(c) for c in range(1, NUM_CLASSES + 1)}
    return {c: class_name(c) for c in range(1, NUM_CLASSES + 1)}
