"""From files to tensors: resize as the protocol says, normalise, and build `Episode`s.

`stretch` resizes to image_size (PANet, HSNet; aspect ratio lost). `longer-side-pad` scales the
longer side to max(image_size) and pads bottom/right (PFENet); padded pixels are labelled 255.
Images are resized bilinearly and labels by nearest neighbour, with PIL as the reference codes do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .data.voc import VocTree, read_pair
from .episode import Episode, binary_mask
from .episodes import EpisodeSpec
from .lru import LRUCache
from .protocol import Protocol

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PAD_LABEL = 255


@dataclass(frozen=True)
class PreparedImage:
    image: torch.Tensor            # [3,H,W] float32, normalised
    label: torch.Tensor            # [H,W] uint8 class indices at input resolution (255 = void/pad)
    original_label: np.ndarray     # [H0,W0] uint8, for scoring at the original resolution
    content_size: tuple[int, int]  # (h, w) of the resized image inside the padded input


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int], mode: str):
    """-> (image uint8 [H,W,3], label uint8 [H,W], content (h, w))."""
    height, width = size
    if mode == "stretch":
        content = (height, width)
    else:  # longer-side-pad
        scale = max(height, width) / max(image.shape[:2])
        content = (min(height, round(image.shape[0] * scale)), min(width, round(image.shape[1] * scale)))
    resized = np.asarray(Image.fromarray(image).resize(content[::-1], Image.BILINEAR))
    resized_label = np.asarray(Image.fromarray(label).resize(content[::-1], Image.NEAREST))
    if content == (height, width):
        return resized, resized_label, content
    padded = np.zeros((height, width, 3), dtype=np.uint8)
    padded_label = np.full((height, width), PAD_LABEL, dtype=np.uint8)
    padded[:content[0], :content[1]] = resized
    padded_label[:content[0], :content[1]] = resized_label
    return padded, padded_label, content


def normalise(image: np.ndarray, content: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 [H,W,3] -> float32 [3,H,W] with ImageNet mean/std; padding (outside content) is 0."""
    array = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    if content is not None:
        array[content[0]:, :] = 0.0
        array[:, content[1]:] = 0.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def prepare_image(tree: VocTree, image_id: str, protocol: Protocol) -> PreparedImage:
    image, label = read_pair(tree, image_id)
    resized, resized_label, content = resize_pair(image, label, protocol.image_size, protocol.resize)
    return PreparedImage(normalise(resized, content), torch.from_numpy(resized_label.copy()), label, content)


class ImageLoader:
    """Prepared images by id, memoised in a byte-bounded LRU (an id recurs across many episodes)."""

    def __init__(self, tree: VocTree, protocol: Protocol, cache_mib: float = 256):
        self.tree, self.protocol = tree, protocol
        self.cache = LRUCache(int(cache_mib * 2**20))

    def __call__(self, image_id: str) -> PreparedImage:
        return self.cache.get_or_compute(image_id, lambda: prepare_image(self.tree, image_id, self.protocol))


def build_episode(spec: EpisodeSpec, load: ImageLoader, protocol: Protocol,
                  flips: tuple[bool, ...] | None = None,
                  with_query_masks: bool = True) -> tuple[Episode, list[PreparedImage]]:
    """Episode and the prepared query images (the runner scores from their labels, so it asks
    for no query masks: a method never sees them anyway).

    `flips` (training only) mirrors support+query images horizontally, supports first.
    """
    void_as_background = protocol.support_ignore == "background"
    supports = [load(i) for i in spec.support]
    queries = [load(i) for i in spec.query]

    def stack(items, offset):
        images = torch.stack([p.image for p in items])
        labels = torch.stack([p.label for p in items])
        if flips is not None:
            for k in range(len(items)):
                if flips[offset + k]:
                    images[k] = images[k].flip(-1)
                    labels[k] = labels[k].flip(-1)
        return images, labels

    support_images, support_labels = stack(supports, 0)
    query_images, query_labels = stack(queries, len(supports))
    episode = Episode(
        class_id=spec.class_id,
        support_images=support_images,
        support_masks=binary_mask(support_labels, spec.class_id, void_as_background),
        query_images=query_images,
        query_masks=binary_mask(query_labels, spec.class_id, void_as_background=False) if with_query_masks else None,
        support_ids=spec.support,
        query_ids=spec.query,
    )
    return episode, queries
