"""`synthetic5i`: a small stand-in for PASCAL-5i written in the exact VOC on-disk formats.

Each of the 20 classes is a family of appearance: a shape (5 kinds), a texture (4 kinds) and a
colour around a class hue, all with intra-class variation (size, aspect, rotation, texture
period, colour jitter). Shape and texture are shared across folds in different combinations, so
features learned on a fold's 15 base classes transfer to its 5 novel classes, while colour alone
is ambiguous: background clutter and distractor blobs draw from the same hues. Each image holds
1-3 objects of distinct classes over textured clutter; masks are palette PNGs with a void (255)
band of 1-3 px along object borders, as in VOC.

Every image is drawn from its own `numpy.random.Generator` seeded by (seed, image number), so the
tree is deterministic and the masks (hence the episode lists) are identical on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..classes import NUM_CLASSES
from .manifest import manifest_matches, write_manifest
from .png import write_mask_png

GENERATOR_VERSION = 1
SHAPES = ("ellipse", "rectangle", "triangle", "ring", "cross")
TEXTURES = ("stripes", "checker", "dots", "waves")


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0
    n_train: int = 480
    n_val: int = 240
    min_side: int = 80
    max_side: int = 112
    version: int = GENERATOR_VERSION


def synthetic_class_name(class_id: int, family=None) -> str:
    """What a synthetic class looks like, e.g. `ellipse-stripes-h126` (shape, texture, hue in
    degrees): shape-texture pairs repeat across the 20 classes, the hue tells them apart."""
    shape, texture, hue = (family or class_family)(class_id)
    return f"{shape}-{texture}-h{round(hue * 360)}"


def class_family(class_id: int) -> tuple[str, str, float]:
    """(shape, texture, hue) of a class; a fold's novel classes mix shapes and textures seen in training."""
    k = class_id - 1
    shape = SHAPES[k % len(SHAPES)]
    texture = TEXTURES[(k + k // 5) % len(TEXTURES)]
    hue = ((7 * k) % NUM_CLASSES) / NUM_CLASSES
    return shape, texture, hue


def family_for(num_classes: int):
    """The appearance of classes 1..num_classes: `class_family` for the 20 of `synthetic5i`; for
    more (the COCO and FSS-1000 stand-ins), the 20 shape-texture pairs repeated in hue bands, each
    band's hues spread as `synthetic5i`'s are, so every class looks different from every other."""
    if num_classes == NUM_CLASSES:
        return class_family
    bands = -(-num_classes // NUM_CLASSES)

    def family(class_id: int) -> tuple[str, str, float]:
        k = class_id - 1
        shape, texture, _ = class_family(k % NUM_CLASSES + 1)
        band, within = divmod(k, NUM_CLASSES)
        hue = (((7 * within) % NUM_CLASSES) / NUM_CLASSES + band / (bands * NUM_CLASSES)) % 1.0
        return shape, texture, hue
    return family


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    zoomed = ndimage.zoom(grid, (height / (cells + 1), width / (cells + 1)), order=1)
    return zoomed[:height, :width]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    if shape == "ellipse":
        return (u / aspect) ** 2 + v ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= 0.85 * aspect) & (np.abs(v) <= 0.85)
    if shape == "triangle":
        return (v <= 0.75) & (np.abs(u) * 1.2 / aspect <= (v + 1.0))
    if shape == "ring":
        radius = np.sqrt((u / aspect) ** 2 + v ** 2)
        return (radius <= 1.0) & (radius >= 0.55)
    if shape == "cross":
        arm = 0.36
        return ((np.abs(u) <= arm) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= arm) & (np.abs(u) <= aspect))
    raise ValueError(shape)


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """A two-level pattern in {0, 1} drawn in the object's own (rotated) frame."""
    phase_u, phase_v = u * np.pi / period, v * np.pi / period
    if texture == "stripes":
        return (np.sin(phase_u) > 0).astype(np.float32)
    if texture == "checker":
        return ((np.sin(phase_u) > 0) ^ (np.sin(phase_v) > 0)).astype(np.float32)
    if texture == "dots":
        return ((np.sin(phase_u) * np.sin(phase_v)) > 0.45).astype(np.float32)
    if texture == "waves":
        return (np.sin(phase_u + 1.5 * np.sin(phase_v * 0.8)) > 0).astype(np.float32)
    raise ValueError(texture)


def render_image(config: SyntheticConfig, number: int, family=None, num_classes: int = NUM_CLASSES,
                 only_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 [H,W,3] and class-index mask uint8 [H,W] (with 255 borders) of one image: 1-3
    objects of distinct classes among 1..num_classes, or one object of `only_class` (FSS-1000's
    single-object images)."""
    family = family or class_family
    rng = np.random.default_rng([config.seed, number])
    height = int(rng.integers(config.min_side, config.max_side + 1))
    width = int(rng.integers(config.min_side, config.max_side + 1))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # Clutter: two hues blended by smooth noise, plus fine grain.
    hue_a, hue_b = rng.random(2)
    blend = _smooth_noise(rng, height, width, int(rng.integers(3, 7)))[..., None]
    image = (blend * _hsv_to_rgb(hue_a, rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.9))
             + (1 - blend) * _hsv_to_rgb(hue_b, rng.uniform(0.2, 0.7), rng.uniform(0.3, 0.9)))
    label = np.zeros((height, width), dtype=np.uint8)

    def placement(scale_low: float, scale_high: float):
        radius = rng.uniform(scale_low, scale_high) * min(height, width)
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        angle = rng.uniform(0, np.pi)
        dy, dx = (yy - cy) / radius, (xx - cx) / radius
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = -np.sin(angle) * dx + np.cos(angle) * dy
        return u, v, radius

    # Distractors: untextured blobs in any hue, labelled background.
    for _ in range(int(rng.integers(0, 3))):
        u, v, _ = placement(0.08, 0.2)
        blob = _shape_mask("ellipse", u, v, rng.uniform(0.5, 1.5))
        image[blob] = _hsv_to_rgb(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0))

    n_objects = int(rng.integers(1, 4))
    classes = rng.choice(np.arange(1, num_classes + 1), size=n_objects, replace=False)
    if only_class is not None:
        classes = [only_class]
    for class_id in classes:
        shape, texture, hue = family(int(class_id))
        u, v, _ = placement(0.16, 0.3) if only_class is None else placement(0.25, 0.38)
        region = _shape_mask(shape, u, v, rng.uniform(0.7, 1.3))
        if region.sum() < 16:
            continue
        period = rng.uniform(0.22, 0.32)  # half-period, in units of the object's radius
        pattern = _texture(texture, u, v, period)
        jitter_hue = (hue + rng.normal(0, 0.03)) % 1.0
        colour_a = _hsv_to_rgb(jitter_hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))
        colour_b = colour_a * rng.uniform(0.25, 0.5)
        shade = pattern[..., None] * colour_a + (1 - pattern[..., None]) * colour_b
        image[region] = shade[region]
        label[region] = class_id

    # VOC-style void band of 1-3 px along the borders of each visible object.
    void = np.zeros_like(label, dtype=bool)
    for class_id in np.unique(label):
        if class_id == 0:
            continue
        region = label == class_id
        width_px = int(rng.integers(1, 4))
        inside, outside = (width_px + 1) // 2, width_px // 2  # the band straddles the border
        void |= region & ~ndimage.binary_erosion(region, iterations=inside)
        if outside:
            void |= ndimage.binary_dilation(region, iterations=outside) & ~region
    label[void] = 255

    image = image + rng.normal(0, 0.03, size=image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), label


def write_synthetic_tree(root: str | Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write `root/VOCdevkit/VOC2012` (JPEGImages, SegmentationClassAug, ImageSets) and return it.

    Idempotent: an existing tree written with the same config is left as it is.
    """
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    manifest_path = voc / "synthetic5i.json"
    manifest = {"generator": "synthetic5i", **asdict(config), "classes": [synthetic_class_name(c) for c in range(1, NUM_CLASSES + 1)]}
    if manifest_matches(manifest_path, manifest):
        return voc
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": range(0, config.n_train), "val": range(config.n_train, config.n_train + config.n_val)}
    for split, numbers in splits.items():
        ids = []
        for number in numbers:
            image_id = f"syn_{number:06d}"
            image, label = render_image(config, number)
            Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=92)
            write_mask_png(voc / "SegmentationClassAug" / f"{image_id}.png", label)
            ids.append(image_id)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    # The manifest goes last: its presence means the tree is complete.
    write_manifest(manifest_path, manifest)
    return voc


def _register() -> None:
    from .registry import DatasetEntry, register_dataset
    from .voc import locate_voc

    def standin(root, seed: int = 0, images: int | None = None) -> Path:
        sizes = {"n_train": images, "n_val": images} if images else {}
        return write_synthetic_tree(root, SyntheticConfig(seed=seed, **sizes))

    def default_tree(results_dir) -> Path:
        # With no --data-root the default stand-in is written once under the results folder.
        root = Path(results_dir) / "data" / "synthetic5i"
        write_synthetic_tree(root, SyntheticConfig())
        return root

    def definition(protocol, tree):
        from ..datasets import synthetic_dataset
        return synthetic_dataset()

    register_dataset(DatasetEntry("synthetic5i", "the synthetic stand-in", 4, locate_voc, definition, layout="voc",
                                  write_standin=standin, default_tree=default_tree))


_register()
