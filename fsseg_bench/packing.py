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


class PackedEncoders:
    """For a frozen-encoder method whose features per image are several maps (two encoders, a
    pyramid): it defines `encoder_parts(images) -> [maps]`; `encode` packs them, `unpack` gives
    them back, learning each input size's shapes once (also for features read from the store)."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        parts = self.encoder_parts(images)
        self.__dict__.setdefault("_part_shapes", {})[tuple(images.shape[-2:])] = [part.shape[1:] for part in parts]
        return pack(parts)

    def unpack(self, packed: torch.Tensor, image_size) -> list[torch.Tensor]:
        shapes = self.__dict__.setdefault("_part_shapes", {})
        key = tuple(image_size)
        if key not in shapes:
            with torch.no_grad():
                self.encode(packed.new_zeros(1, 3, *key))
        return unpack(packed, shapes[key])

    def unpack_query(self, packed: torch.Tensor, image_size, query_shape) -> tuple[list[torch.Tensor], torch.Tensor]:
        """A query's features as the runner gives them (this method's packed parts, then its
        `encode_query` output packed) -> (the parts, the query-only map [Q, *query_shape])."""
        parts = self.unpack(packed, image_size)
        used = sum(part[0].numel() for part in parts)
        return parts, packed[:, used:, 0, 0].reshape(len(packed), *query_shape)
