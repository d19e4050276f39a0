"""The order of table rows and figure series: the command line's when given, else a stable,
documented one (the reference methods first, then every other row alphabetically)."""

from __future__ import annotations

CANONICAL_ORDER = ("panet", "panet-noalign", "panet-init", "linear-probe", "knn", "support-copy", "all-foreground")


def row_order(labels, requested: list[str] | None = None) -> list[str]:
    """`requested` (method names or row labels, in the order given) first, then the canonical
    methods, then the rest alphabetically; a label like `knn (k=1)` sorts with its method."""
    labels = list(dict.fromkeys(labels))
    ordered = []
    for name in requested or []:
        ordered += [label for label in labels if (label == name or label.split(" ")[0] == name) and label not in ordered]
    rank = {name: i for i, name in enumerate(CANONICAL_ORDER)}
    rest = sorted((label for label in labels if label not in ordered),
                  key=lambda label: (rank.get(label.split(" ")[0], len(rank)), label))
    return ordered + rest
