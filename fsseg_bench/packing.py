"""Several feature maps of one image as one tensor [N, D, 1, 1] (what the runner's feature cache
stores per image), and back: HSNet's pyramid layers, a two-encoder method's two maps."""

from __future__ import annotations

import torch


def pack(parts: list[torch.Tensor]) -> torch.Tensor:
    """[N, ...] maps -> [N, D, 1, 1]: each flattened, concatenated."""
    return torch.cat([part.flatten(1) for part in parts], dim=1)[..., None, None]


def unpack(packed: torch.Tensor, shapes: list[torch.Size]) -> list[torch.Tensor]:
    """The inverse of `pack`, given each part's shape without its batch dimension."""
    out, start = [], 0
    for shape in shapes:
        size = shape.numel()
        out.append(packed[:, start:start + size, 0, 0].reshape(-1, *shape))
        start += size
    return out
