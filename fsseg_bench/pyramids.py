"""Feature pyramids: a frozen encoder's intermediate features, layer by layer, grouped by scale.

The second family of encoders beside `backbones.py` (one feature map each, PANet's kind):
correlation methods such as HSNet read many layers of an ImageNet network. A pyramid is a module
whose forward gives the list of tapped features, fine to coarse, and `group_sizes` saying how many
consecutive taps share a scale.

- `vgg16`: torchvision's VGG16 `features`, tapped after modules 17, 19, 21 (conv4_1..3, before
  their ReLU), 24, 26, 28 (conv5_1..3, before their ReLU) and 30 (pool5): groups (3, 3, 1).
- `resnet50` / `resnet101`: torchvision's ResNet, every bottleneck of layers 2-4 tapped after the
  residual sum and BEFORE the block's final ReLU: groups (4, 6, 3) / (4, 23, 3).
- `smallcnn`: a small multi-scale CNN for CPU runs on the synthetic stand-in, loaded by default
  with its shipped stand-in pretraining (`pretrain.py`): taps at strides 4, 8 and 16, groups (2, 2, 1).

Module names follow torchvision's (`features.N.*`, `conv1`, `layer2.0.conv1`, ...), so ImageNet
state dicts load directly and a model holding the pyramid as `backbone` has the key layout of the
papers' checkpoints. Classifier heads are dropped (their keys in a state dict are ignored). Weights
come from a path the user gives or from torch's local cache; nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .backbones import NO_WEIGHTS, read_state_dict, standin_candidates, torch_cache_candidates, warn_not_pretrained
from .errors import InputError
from .cards import STANDIN_CORPUS


@dataclass(frozen=True)
class Pyramid:
    module: nn.Module          # forward(images) -> list of tapped features, fine to coarse
    name: str
    group_sizes: tuple[int, ...]  # consecutive taps of one scale, fine to coarse
    pretrained: bool
    weights_path: str | None
    pretraining: str = ""  # what its weights were trained on (method cards)


class VGG16Taps(nn.Module):
    TAPS = (17, 19, 21, 24, 26, 28, 30)

    def __init__(self):
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        taps, x = [], images
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self.TAPS:
                taps.append(x.clone())  # the next ReLU works in place
            if index == self.TAPS[-1]:
                break
        return taps


class ResNetTaps(nn.Module):
    def __init__(self, depth: int):
        super().__init__()
        from torchvision.models import resnet50, resnet101

        net = {50: resnet50, 101: resnet101}[depth](weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        taps = []
        for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            for block in layer:
                out = torch.relu(block.bn1(block.conv1(x)))
                out = torch.relu(block.bn2(block.conv2(out)))
                out = block.bn3(block.conv3(out))
                out = out + (block.downsample(x) if block.downsample is not None else x)
                if index > 0:  # layers 2-4, before the block's final ReLU
                    taps.append(out)
                x = torch.relu(out)
        return taps


class SmallPyramidCNN(nn.Module):
    """3x3 convs at strides 1 (32 ch) and 2 (32 ch), then tapped ones (before their ReLU, as
    VGG16's): 2 at stride 4 (48 ch), 2 at stride 8 (64 ch), 1 at stride 16 (96 ch)."""

    TAPS = (6, 8, 11, 13, 16)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),      # 0-2: stride 2
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),     # 3-5: stride 4
            nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(inplace=True),                      # 6 (tap), 7
            nn.Conv2d(48, 48, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),     # 8 (tap), 9, 10: stride 8
            nn.Conv2d(48, 64, 3, padding=1), nn.ReLU(inplace=True),                      # 11 (tap), 12
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),     # 13 (tap), 14, 15: stride 16
            nn.Conv2d(64, 96, 3, padding=1))                                             # 16 (tap)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        taps, x = [], images
        for index, module in enumerate(self.features):
            x = module(x)
            if index in self.TAPS:
                taps.append(x.clone())
        return taps


@dataclass(frozen=True)
class PyramidEntry:
    build: Callable[[], nn.Module]
    group_sizes: tuple[int, ...]
    cache_prefix: str | None  # torch hub cache file prefix of its ImageNet weights
    standin: str | None = None  # the shipped stand-in pretraining (`pretrain.py`) it loads by default
    pretraining: str = "ImageNet-1k"


PYRAMIDS = {
    "vgg16": PyramidEntry(VGG16Taps, (3, 3, 1), "vgg16"),
    "resnet50": PyramidEntry(lambda: ResNetTaps(50), (4, 6, 3), "resnet50"),
    "resnet101": PyramidEntry(lambda: ResNetTaps(101), (4, 23, 3), "resnet101"),
    "smallcnn": PyramidEntry(SmallPyramidCNN, (2, 2, 1), None, "smallcnn-pyramid", STANDIN_CORPUS),
}


def load_pyramid_weights(module: nn.Module, state: dict, source: str) -> None:
    """An ImageNet (or a paper's) state dict: every tensor of the pyramid must be there, with its
    shape; other keys (a classifier, `fc`) are ignored. A `module.` or `backbone.` prefix is stripped."""
    from .checkpoints import load_matching

    load_matching(module, {key.removeprefix("module.").removeprefix("backbone."): value
                           for key, value in state.items()}, source)


def build_pyramid(name: str, weights: str | Path | None = None, seed: int = 0) -> Pyramid:
    """Build a pyramid (random init from a forked RNG seeded by `seed`), then load ImageNet weights
    from `weights` or torch's cache; without any, warn once and record pretrained: false."""
    if name not in PYRAMIDS:
        raise InputError(f"backbone {name!r}: expected one of {', '.join(PYRAMIDS)}")
    entry = PYRAMIDS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = entry.build()
    if weights is not None and str(weights) == NO_WEIGHTS:
        candidates = []
    elif weights is not None:
        candidates = [Path(weights)]
    elif entry.standin is not None:
        candidates = standin_candidates(entry.standin)
    else:
        candidates = torch_cache_candidates(entry.cache_prefix) if entry.cache_prefix else []
    if not candidates:
        where = (f"weights={NO_WEIGHTS}" if str(weights) == NO_WEIGHTS else "its shipped file is missing"
                 if entry.standin is not None else f"none given and none in {torch.hub.get_dir()}/checkpoints")
        warn_not_pretrained(name, where)
        return Pyramid(module, name, entry.group_sizes, False, None)
    load_pyramid_weights(module, read_state_dict(candidates[0]), str(candidates[0]))
    return Pyramid(module, name, entry.group_sizes, True, str(candidates[0]), entry.pretraining)
