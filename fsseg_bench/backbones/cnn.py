"""Convolutional backbones: PANet's VGG16 encoder, ResNet-50 (timm, layers 2+3), and the stand-in's
small CNN for CPU runs.

Weights come from a path the user gives or from the local torch / timm caches; nothing is ever
downloaded. `smallcnn` loads its shipped stand-in pretraining (`pretrain.py`, sha256-checked)
unless weights are given. Without weights the backbone is randomly initialised, a warning says so
loudly, and the caller records `pretrained: false` (the registry's "warn" rule).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import InputError
from ..cards import STANDIN_CORPUS
from .registry import BackboneEntry, hf_cache_candidates, register_backbone, torch_cache_candidates


class VGG16Encoder(nn.Module):
    """PANet's encoder: VGG16's 13 convs; pools 3x3/s2 after blocks 1-3, 3x3/s1 after block 4;
    block 5 dilated by 2 without its last ReLU. Output stride 8, 512 channels.

    `features` indices 0,2,4,6,8 are the conv blocks (1,3,5,7 the pools), so parameter names are
    `features.B.L.weight` as in the paper's snapshots.
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(2, 3, 64), nn.MaxPool2d(3, stride=2, padding=1),
            _conv_block(2, 64, 128), nn.MaxPool2d(3, stride=2, padding=1),
            _conv_block(3, 128, 256), nn.MaxPool2d(3, stride=2, padding=1),
            _conv_block(3, 256, 512), nn.MaxPool2d(3, stride=1, padding=1),
            _conv_block(3, 512, 512, dilation=2, last_relu=False),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


class SmallCNN(nn.Module):
    """Six 3x3 convs in three blocks, output stride 4, 128 channels; last ReLU dropped as in PANet."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(2, 3, width), nn.MaxPool2d(3, stride=2, padding=1),
            _conv_block(2, width, 2 * width), nn.MaxPool2d(3, stride=2, padding=1),
            _conv_block(2, 2 * width, 4 * width, dilation=2, last_relu=False),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


class ResNet50Features(nn.Module):
    """timm ResNet-50, layer2 and layer3 (dilated to output stride 8) concatenated: 1536 channels."""

    def __init__(self):
        super().__init__()
        import timm

        self.body = timm.create_model("resnet50", pretrained=False, features_only=True,
                                      out_indices=(2, 3), output_stride=8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        layer2, layer3 = self.body(images)
        return torch.cat([layer2, layer3], dim=1)


def _conv_block(n_convs: int, in_channels: int, out_channels: int, dilation: int = 1,
                last_relu: bool = True) -> nn.Sequential:
    layers = []
    for i in range(n_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation))
        if i < n_convs - 1 or last_relu:
            layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


# --- weights ----------------------------------------------------------------------------------

def standin_candidates(architecture: str) -> list[Path]:
    """The shipped stand-in weights of `architecture` (`smallcnn`, `smallcnn-pyramid`), checked
    against their recorded sha256: an edited file is an error, never silently other weights."""
    from ..contenthash import file_sha256
    from ..pretrain import standin_weights

    shipped = standin_weights(architecture)
    if shipped is None or not shipped[0].is_file():
        return []
    path, expected = shipped
    if file_sha256(path) != expected:
        raise InputError(f"{path}: sha256 {file_sha256(path)} is not the shipped stand-in weights' {expected}; "
                         f"reinstall fsseg-bench, or rebuild them with `fsseg-bench pretrain-standin`")
    return [path]


def load_torchvision_vgg16(encoder: VGG16Encoder, state: dict[str, torch.Tensor], source: str = "") -> None:
    """The first 26 tensors of a torchvision VGG16 (13 conv weights + biases, in order) -> our 13 convs."""
    ours = encoder.state_dict()
    theirs = [(k, v) for k, v in state.items() if k.startswith("features.")] or list(state.items())
    if len(theirs) < len(ours):
        raise InputError(f"{source}: expected at least {len(ours)} VGG16 conv tensors, found {len(theirs)}")
    for (our_key, our_value), (their_key, value) in zip(ours.items(), theirs):
        if our_value.shape != value.shape:
            raise InputError(f"{source}: tensor {their_key} has shape {tuple(value.shape)}, expected "
                             f"{tuple(our_value.shape)} for {our_key}")
        ours[our_key] = value
    encoder.load_state_dict(ours)


def _load_resnet50(model: ResNet50Features, state: dict[str, torch.Tensor], source: str) -> None:
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, _ = model.body.load_state_dict(state, strict=False)
    if missing:
        raise InputError(f"{source}: not a ResNet-50 state dict (missing {missing[0]!r} and {len(missing) - 1} more)")


def _load_exact(module: nn.Module, state: dict, source: str) -> None:
    module.load_state_dict(state)


def _hub_folder() -> str:
    return f"none given and none in {torch.hub.get_dir()}/checkpoints"


register_backbone(BackboneEntry(
    "vgg16", VGG16Encoder, 512, 8, "torchvision", "ImageNet-1k",
    lambda: torch_cache_candidates("vgg16"), load_torchvision_vgg16, where=_hub_folder(),
    description="PANet's VGG16 encoder (dilated block 5, output stride 8); torchvision's ImageNet weights"))
register_backbone(BackboneEntry(
    "resnet50", ResNet50Features, 1536, 8, "torchvision", "ImageNet-1k",
    lambda: torch_cache_candidates("resnet50") + hf_cache_candidates("timm/resnet50*"), _load_resnet50,
    where=_hub_folder(), description="ResNet-50 layers 2+3 (dilated, output stride 8)"))
register_backbone(BackboneEntry(
    "smallcnn", SmallCNN, 128, 4, "stand-in", STANDIN_CORPUS,
    lambda: standin_candidates("smallcnn"), _load_exact, where="its shipped file is missing",
    description="six 3x3 convs, output stride 4; the stand-in pretraining ships with the package"))
