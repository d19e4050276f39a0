"""The stand-in's ImageNet: `smallcnn` pretrained by classification on a synthetic corpus.

On real data every method starts from an ImageNet-pretrained encoder. The stand-in's counterpart
is a corpus drawn by the same generator as the stand-in (`data/synthetic.py`) with its own seed,
so no corpus image is an image of any stand-in split (tests check it by content hash): each
corpus image holds one object of a random (shape, texture, hue) combination over clutter, and the
encoder learns to name the three attributes (5 shapes, 4 textures, 12 hue bins; one linear head
each on globally pooled features), as an ImageNet classifier learns to name objects.

What it stands for: an encoder whose features already tell shapes, textures and colours apart
before any few-shot training, so that methods that freeze their encoder (HSNet) or start from it
(PANet) behave on the stand-in as they do on real data. What it does not: it is not ImageNet, its
attributes are the very factors the stand-in's classes are made of (as ImageNet's classes overlap
PASCAL's), and numbers on the stand-in say nothing about numbers on real data.

The recipe is deterministic (seeded corpus, seeded init, one thread, fixed order); its output
ships as `fsseg_bench/weights/smallcnn-standin.pt` with its sha256, checked on every load.
`fsseg-bench pretrain-standin --out FILE` rebuilds it (bit for bit on the same torch build and
CPU; float summation order may differ elsewhere, which is why the file ships instead of being
rebuilt at install time).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.synthetic import SHAPES, TEXTURES, SyntheticConfig, render_image

HUE_BINS = 12
CORPUS_SEED = 20_260_001  # the stand-in trees use small seeds (0 by default); this stream is the corpus's own
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The shipped weights of each stand-in encoder: `smallcnn` (PANet, the baselines) and HSNet's
# `smallcnn` pyramid, and the sha256 each file must have.
STANDIN_WEIGHTS = {
    "smallcnn": ("smallcnn-standin.pt", "b3ac3c2d527c799a5a358429e0617817853488af66e696b13fee73e8738f8ef1"),
    "smallcnn-pyramid": ("smallcnn-pyramid-standin.pt", "f0adf58e1b125d9a0d94f6ab8010133db30ab3e7c5e8a715571b07ae8f9a7abb"),
}


def standin_weights(architecture: str) -> tuple[Path, str] | None:
    """(path, expected sha256) of an architecture's shipped stand-in weights, or None."""
    if architecture not in STANDIN_WEIGHTS:
        return None
    name, sha256 = STANDIN_WEIGHTS[architecture]
    return WEIGHTS_DIR / name, sha256


@dataclass(frozen=True)
class PretrainRecipe:
    images: int = 6000         # corpus size
    steps: int = 2000          # SGD steps
    batch: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = 48       # the stand-in protocols' inputs are 64 px; 48 keeps the recipe near 5 min on a CPU
    seed: int = 0              # init and batch order


def corpus_attributes(number: int) -> tuple[int, int, int]:
    """(shape, texture, hue bin) of corpus image `number`: every combination, in a fixed shuffle."""
    rng = np.random.default_rng([CORPUS_SEED, number, 1])
    return int(rng.integers(len(SHAPES))), int(rng.integers(len(TEXTURES))), int(rng.integers(HUE_BINS))


def corpus_image(number: int, config: SyntheticConfig | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """uint8 [H,W,3] of corpus image `number` and its attributes."""
    shape, texture, hue_bin = corpus_attributes(number)
    hue = (hue_bin + 0.5) / HUE_BINS
    config = config or SyntheticConfig(seed=CORPUS_SEED)
    image, _ = render_image(config, number, family=lambda _: (SHAPES[shape], TEXTURES[texture], hue), only_class=1)
    return image, (shape, texture, hue_bin)


def corpus_tensors(images: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus at the input size, normalised as every run normalises: ([N,3,S,S], [N,3] labels)."""
    from .preprocess import normalise
    from .resample import pil_bilinear

    inputs, labels = [], []
    for number in range(images):
        image, attributes = corpus_image(number)
        inputs.append(normalise(pil_bilinear(image, (image_size, image_size))))
        labels.append(attributes)
    return torch.stack(inputs), torch.tensor(labels, dtype=torch.long)


class AttributeClassifier(nn.Module):
    """The encoder and three linear heads on its globally pooled (last) features."""

    def __init__(self, encoder: nn.Module, channels: int):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList([nn.Linear(channels, n) for n in (len(SHAPES), len(TEXTURES), HUE_BINS)])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.encoder(images)
        if isinstance(features, (list, tuple)):  # a pyramid: every tap pooled, so that every layer HSNet reads learns
            pooled = torch.cat([F.relu(tap).mean(dim=(2, 3)) for tap in features], dim=1)
        else:
            pooled = F.relu(features).mean(dim=(2, 3))
        return [head(pooled) for head in self.heads]


def _architecture(name: str) -> tuple[nn.Module, int]:
    from .backbones import SmallCNN
    from .pyramids import SmallPyramidCNN

    if name == "smallcnn":
        return SmallCNN(), 128
    if name == "smallcnn-pyramid":
        return SmallPyramidCNN(), 48 + 48 + 64 + 64 + 96
    raise ValueError(f"architecture {name!r}: expected one of {', '.join(STANDIN_WEIGHTS)}")


@dataclass(frozen=True)
class PretrainResult:
    state: dict
    losses: list[float]           # mean loss per tenth of the schedule
    accuracy: tuple[float, ...]   # held-out accuracy of each head
    seconds: float


def pretrain(recipe: PretrainRecipe = PretrainRecipe(), architecture: str = "smallcnn",
             progress=None) -> PretrainResult:
    """Train a stand-in encoder on the corpus; returns its state dict and how training went."""
    began = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order: the same weights on every run of the recipe
    try:
        inputs, labels = corpus_tensors(recipe.images, recipe.image_size)
        held_out = max(recipe.images // 10, 1)
        train_x, train_y, test_x, test_y = inputs[held_out:], labels[held_out:], inputs[:held_out], labels[:held_out]
        generator = torch.Generator().manual_seed(recipe.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model = AttributeClassifier(*_architecture(architecture))
        optimiser = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, recipe.steps)
        losses, window = [], []
        order = torch.randperm(len(train_x), generator=generator)
        position = 0
        model.train()
        for step in range(recipe.steps):
            if position + recipe.batch > len(order):
                order, position = torch.randperm(len(train_x), generator=generator), 0
            batch = order[position:position + recipe.batch]
            position += recipe.batch
            images = train_x[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5  # horizontal flips, seeded
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            outputs = model(images)
            loss = sum(F.cross_entropy(out, train_y[batch, k]) for k, out in enumerate(outputs))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            window.append(loss.item())
            if len(window) == max(recipe.steps // 10, 1):
                losses.append(float(np.mean(window)))
                window = []
                if progress:
                    progress(step + 1, recipe.steps, losses[-1])
        model.eval()
        with torch.no_grad():
            outputs = model(test_x)
        accuracy = tuple(float((out.argmax(1) == test_y[:, k]).float().mean()) for k, out in enumerate(outputs))
        state = {name: tensor.detach().clone() for name, tensor in model.encoder.state_dict().items()}
        return PretrainResult(state, losses, accuracy, time.perf_counter() - began)
    finally:
        torch.set_num_threads(threads)


def save_weights(state: dict, path: str | Path) -> str:
    """Write the encoder's state dict; return the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()
