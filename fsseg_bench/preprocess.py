"""From files to tensors: resize as the protocol says, normalise, and build `Episode`s.

`stretch` resizes to image_size (PANet, HSNet; aspect ratio lost). `longer-side-pad` scales the
longer side to max(image_size) and pads bottom/right; `longer-side-pad-floor8` is PFENet's exact
geometry (int() of the scaled side, both sides floored to multiples of 8). Padded label pixels are
255. Images are resized bilinearly and labels by nearest neighbour with the library each codebase
used (the protocol's `image_resize` / `label_resize`, see `resample.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.voc import image_size, read_image, read_pair
from .errors import InputError
from .episode import Episode, binary_mask
from .episodes import EpisodeSpec
from .lru import LRUCache
from .protocol import Protocol
from .resample import IMAGE_RESIZERS, LABEL_RESIZERS

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PAD_LABEL = 255


@dataclass(frozen=True)
class PreparedLabel:
    label: torch.Tensor            # [H,W] uint8 class indices at input resolution (255 = void/pad)
    original_label: np.ndarray     # [H0,W0] uint8, for scoring at the original resolution
    content_size: tuple[int, int]  # (h, w) of the resized image inside the padded input


@dataclass(frozen=True)
class PreparedImage(PreparedLabel):
    image: torch.Tensor = None     # [3,H,W] float32, normalised


def content_size(shape: tuple[int, int], size: tuple[int, int], mode: str) -> tuple[int, int]:
    """(h, w) of the resized image inside the [H, W] input."""
    height, width = size
    if mode == "stretch":
        return height, width
    if mode == "longer-side-pad-floor8":
        return pfenet_content_size(shape, max(height, width))
    scale = max(height, width) / max(shape)  # longer-side-pad
    return min(height, round(shape[0] * scale)), min(width, round(shape[1] * scale))


def pfenet_content_size(shape: tuple[int, int], side: int) -> tuple[int, int]:
    """PFENet's `Resize`: the longer side to `side`, the other by int() of the scaled length, then
    both floored to multiples of 8 (so 473 becomes 472)."""
    original_h, original_w = shape
    if original_h >= original_w:
        new_h, new_w = side, int(original_w * (side * 1.0 / original_h))
    else:
        new_h, new_w = int(original_h * (side * 1.0 / original_w)), side
    return new_h - new_h % 8, new_w - new_w % 8


def _pad(array: np.ndarray, size: tuple[int, int], fill: int) -> np.ndarray:
    if array.shape[:2] == tuple(size):
        return array
    padded = np.full((*size, *array.shape[2:]), fill, dtype=array.dtype)
    padded[:array.shape[0], :array.shape[1]] = array
    return padded


def resize_image(image: np.ndarray, size: tuple[int, int], mode: str,
                 method: str = "pil-bilinear") -> tuple[np.ndarray, tuple[int, int]]:
    """-> ([H,W,3] resized by `method` (uint8 for PIL, float32 for OpenCV's), padded with 0 outside
    the content; content (h, w))."""
    content = content_size(image.shape[:2], size, mode)
    return _pad(IMAGE_RESIZERS[method](image, content), size, 0), content


def resize_label(label: np.ndarray, size: tuple[int, int], mode: str,
                 method: str = "pil-nearest") -> tuple[np.ndarray, tuple[int, int]]:
    """-> (uint8 [H,W] resized by `method`, padded with 255; content (h, w))."""
    content = content_size(label.shape, size, mode)
    return _pad(LABEL_RESIZERS[method](label, content), size, PAD_LABEL), content


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int], mode: str,
                image_method: str = "pil-bilinear", label_method: str = "pil-nearest"):
    """-> (image [H,W,3], label uint8 [H,W], content (h, w))."""
    resized, content = resize_image(image, size, mode, image_method)
    return resized, resize_label(label, size, mode, label_method)[0], content


# PFENet's transform.Normalize on a 0..255 float32 tensor: (x - 255 m) / (255 s), each step in float32.
PIXEL_MEAN = np.array([0.485 * 255, 0.456 * 255, 0.406 * 255], dtype=np.float32)
PIXEL_STD = np.array([0.229 * 255, 0.224 * 255, 0.225 * 255], dtype=np.float32)


def normalise(image: np.ndarray, content: tuple[int, int] | None = None, padding: str = "mean",
              order: str = "unit-range") -> torch.Tensor:
    """[H,W,3] in 0..255 -> float32 [3,H,W] with ImageNet mean/std. Padding outside `content` is 0
    after normalising (`mean`: the mean colour) or before (`black`, as PFENet pads)."""
    if order == "pixel-range":
        array = (image.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
    else:  # unit-range: torchvision's ToTensor then Normalize
        array = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    if content is not None and padding == "mean":
        array[content[0]:, :] = 0.0
        array[:, content[1]:] = 0.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def prepare_label(tree, image_id: str, protocol: Protocol) -> PreparedLabel:
    """The label alone (the image is only opened for its size): what scoring and support masks need."""
    label = tree.read_label(image_id)
    height, width = image_size(tree.image_path(image_id))
    if (height, width) != label.shape:
        raise InputError(f"{tree.mask_path(image_id)}: mask size {label.shape[1]}x{label.shape[0]} != image size "
                         f"{width}x{height} of {tree.image_path(image_id)}")
    resized, content = resize_label(label, protocol.image_size, protocol.resize, protocol.label_resize)
    return PreparedLabel(torch.from_numpy(resized.copy()), label, content)


def prepare_image_tensor(tree, image_id: str, protocol: Protocol) -> torch.Tensor:
    """The normalised input image alone (what an encoder needs)."""
    resized, content = resize_image(read_image(tree.image_path(image_id)), protocol.image_size, protocol.resize,
                                    protocol.image_resize)
    return normalise(resized, content, protocol.image_padding, protocol.normalise)


def prepare_image(tree, image_id: str, protocol: Protocol) -> PreparedImage:
    image, label = read_pair(tree, image_id)
    resized, resized_label, content = resize_pair(image, label, protocol.image_size, protocol.resize,
                                                  protocol.image_resize, protocol.label_resize)
    return PreparedImage(torch.from_numpy(resized_label.copy()), label, content,
                         normalise(resized, content, protocol.image_padding, protocol.normalise))


class ImageLoader:
    """Prepared labels and images by id, each memoised in its own byte-bounded LRU: labels are small
    and needed by every episode, images only to encode (or by methods without a frozen encoder).

    Entries are keyed by the id and the files' content sha256 (`file_sha256`, the class index's
    {id: (image sha256, mask sha256)}), so a loader that lives across calls never serves an image
    or mask that has been edited since."""

    def __init__(self, tree, protocol: Protocol, cache_mib: float = 256, label_cache_mib: float = 128,
                 file_sha256: dict[str, tuple[str, str]] | None = None):
        self.tree, self.protocol = tree, protocol
        self.cache = LRUCache(int(cache_mib * 2**20))
        self.labels = LRUCache(int(label_cache_mib * 2**20))
        self.file_sha256 = file_sha256

    def _key(self, image_id: str) -> tuple:
        return (image_id, self.file_sha256.get(image_id) if self.file_sha256 is not None else None)

    def label(self, image_id: str) -> PreparedLabel:
        return self.labels.get_or_compute(self._key(image_id), lambda: prepare_label(self.tree, image_id, self.protocol))

    def image(self, image_id: str, keep: bool = True) -> torch.Tensor:
        """The normalised image; `keep=False` for an image needed once (to encode it into a store)."""
        key = self._key(image_id)
        if not keep and key not in self.cache:
            return prepare_image_tensor(self.tree, image_id, self.protocol)
        return self.cache.get_or_compute(key, lambda: prepare_image_tensor(self.tree, image_id, self.protocol))

    def __call__(self, image_id: str) -> PreparedImage:
        label = self.label(image_id)
        return PreparedImage(label.label, label.original_label, label.content_size, self.image(image_id))


def placeholder_images(count: int, size: tuple[int, int]) -> torch.Tensor:
    """[count,3,H,W] NaN without memory (a zero-stride view): a frozen-encoder method sees images only
    through `encode`, and any accidental use of these turns its scores NaN, which fails the run."""
    return torch.full((), float("nan")).expand(count, 3, *size)


def build_feature_episode(spec: EpisodeSpec, load: ImageLoader, protocol: Protocol) -> tuple[Episode, list[PreparedLabel]]:
    """An episode for the frozen-encoder path: real support masks, placeholder images (the runner
    gives the method features or statistics instead), and the prepared query labels for scoring."""
    supports = [load.label(i) for i in spec.support]
    queries = [load.label(i) for i in spec.query]
    masks = binary_mask(torch.stack([p.label for p in supports]), load.tree.label_value(spec.class_id),
                        protocol.support_ignore == "background")
    episode = Episode(class_id=spec.class_id, support_images=placeholder_images(len(supports), protocol.image_size),
                      support_masks=masks, query_images=placeholder_images(len(queries), protocol.image_size),
                      query_masks=None, support_ids=spec.support, query_ids=spec.query)
    return episode, queries


def build_episode(spec: EpisodeSpec, load: ImageLoader, protocol: Protocol,
                  flips: tuple[bool, ...] | None = None,
                  with_query_masks: bool = True) -> tuple[Episode, list[PreparedImage]]:
    """Episode and the prepared query images (the runner scores from their labels, so it asks
    for no query masks: a method never sees them anyway).

    `flips` (training only) mirrors support+query images horizontally, supports first.
    """
    void_as_background = protocol.support_ignore == "background"
    value = load.tree.label_value(spec.class_id)  # the class's value in this layout's labels
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
        support_masks=binary_mask(support_labels, value, void_as_background),
        query_images=query_images,
        query_masks=binary_mask(query_labels, value, void_as_background=False) if with_query_masks else None,
        support_ids=spec.support,
        query_ids=spec.query,
    )
    return episode, queries
