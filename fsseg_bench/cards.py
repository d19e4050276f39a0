"""Method cards: what a method was trained or pretrained on, shown beside its numbers (the idea of
mteb's training-dataset declarations).

A method class declares what it does with data (`card = MethodCard(training=..., class_names=...,
test_time_adaptation=...)`); what its encoders were pretrained on comes from the backbones it
built (`method.pretraining`, e.g. ("ImageNet-1k",) or ("LVD-142M", "SA-1B")), empty for a random
init. The runner records the card in run.json; tables, results.json and the report show it, and
warn where a pretraining corpus is known to hold the benchmark's test classes or images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

NO_TRAINING = "none"
STANDIN_CORPUS = "the stand-in's synthetic attribute corpus (pretrain.py)"  # the stand-in encoders' pretraining
BASE_CLASSES = "episodic, on the fold's base classes"


@dataclass(frozen=True)
class MethodCard:
    training: str = NO_TRAINING          # what the method's own parameters were fitted on
    class_names: bool = False            # reads class names or text at test time
    test_time_adaptation: bool = False   # adapts on the target images at test time
    notes: str = ""


# What is known of each pretraining corpus against each dataset (a `Protocol.dataset`), as far as
# the corpora's papers say. "classes": the corpus labels or holds the benchmark's test classes, so
# the test folds' "novel" classes are not novel to the encoder; "images": it may hold the
# benchmark's images themselves.
KNOWN_OVERLAPS: dict[str, dict[str, tuple[str, str]]] = {
    "ImageNet-1k": {
        "pascal-voc": ("classes", "ImageNet-1k's labels cover most PASCAL VOC classes (aeroplane, cat, dog, "
                                  "bird, boat, ... as fine-grained labels)"),
        "coco": ("classes", "ImageNet-1k's labels cover many COCO classes"),
        "fss1000": ("classes", "FSS-1000 was built with many ImageNet classes among its 1000"),
    },
    "LVD-142M": {
        "pascal-voc": ("classes", "LVD-142M was curated by retrieval around ImageNet-1k/22k and other curated sets "
                                  "(DINOv2, Oquab et al. 2023): it holds these classes; its deduplication removed "
                                  "near-copies of the paper's own evaluation sets only"),
        "coco": ("classes", "LVD-142M was curated by retrieval around ImageNet-1k/22k and other curated sets "
                            "(DINOv2): it holds COCO's classes"),
        "fss1000": ("classes", "LVD-142M was curated by retrieval around ImageNet-1k/22k (DINOv2)"),
    },
    "LVD-1689M": {
        "pascal-voc": ("classes", "DINOv3's LVD-1689M was curated from web images around ImageNet-like sets"),
        "coco": ("classes", "DINOv3's LVD-1689M was curated from web images around ImageNet-like sets"),
        "fss1000": ("classes", "DINOv3's LVD-1689M was curated from web images around ImageNet-like sets"),
    },
    "SA-1B": {
        "pascal-voc": ("masks", "SAM's data engine started from a model trained on public segmentation datasets "
                                "(Kirillov et al. 2023, sec. 4); its masks carry no class"),
        "coco": ("masks", "SAM's data engine started from a model trained on public segmentation datasets, COCO-style "
                          "masks among them (Kirillov et al. 2023, sec. 4); its masks carry no class"),
    },
    STANDIN_CORPUS: {
        "synthetic5i": ("classes", "the stand-in pretraining classifies the shapes, textures and hues the stand-in's "
                                   "classes are made of (by design: it plays ImageNet's part)"),
    },
}


def card_of(method) -> dict:
    """The card a run records: the class's declaration plus what its encoders were pretrained on."""
    card = getattr(method, "card", None) or MethodCard()
    pretraining = [str(p) for p in (getattr(method, "pretraining", ()) or ()) if p]
    return {"pretraining": pretraining, **asdict(card)}


def card_warnings(card: dict | None, dataset: str) -> list[str]:
    """One line per known overlap between the card's pretraining and the benchmark's dataset, and
    for test-time use of class names or target images."""
    if not card:
        return []
    lines = [f"{corpus}: {KNOWN_OVERLAPS[corpus][dataset][1]}" for corpus in card.get("pretraining", [])
             if dataset in KNOWN_OVERLAPS.get(corpus, {})]
    if card.get("class_names"):
        lines.append("reads class names or text at test time")
    if card.get("test_time_adaptation"):
        lines.append("adapts on the target images at test time")
    return lines


def card_text(card: dict | None) -> str:
    """`pretrained on ImageNet-1k; trained episodic, on the fold's base classes` (short, for tables)."""
    if not card:
        return "unknown (a run from before method cards)"
    parts = ["pretrained on " + " + ".join(card["pretraining"]) if card.get("pretraining") else "no pretrained encoder"]
    parts.append("trained " + card["training"] if card.get("training", NO_TRAINING) != NO_TRAINING else "not trained")
    if card.get("class_names"):
        parts.append("class names at test time")
    if card.get("test_time_adaptation"):
        parts.append("test-time adaptation")
    return "; ".join(parts)
