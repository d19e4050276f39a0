"""Backbones: one registry entry per encoder, one module per family (`cnn.py`, `vit.py`, `sam.py`); a plugin
adds one with `register_backbone`. `build_backbone(name, weights, seed)` gives a module whose
forward is one feature map [B, C, h, w]. HSNet's multi-layer pyramids are `fsseg_bench.pyramids`."""

from .registry import (BACKBONES, NO_WEIGHTS, Backbone, BackboneEntry, backbone_entry, backbone_names,
                       build_backbone, hf_cache_candidates, read_state_dict, register_backbone,
                       torch_cache_candidates, warn_not_pretrained)
from .cnn import (ResNet50Features, SmallCNN, VGG16Encoder, load_torchvision_vgg16,  # noqa: E402 (registers)
                  standin_candidates)
from .vit import ViTTokens  # noqa: E402 (registers)
from .sam import SamEmbeddings  # noqa: E402 (registers; segment-anything is imported only when one is built)

__all__ = ["BACKBONES", "NO_WEIGHTS", "Backbone", "BackboneEntry", "ResNet50Features", "SmallCNN", "VGG16Encoder",
           "SamEmbeddings", "ViTTokens", "backbone_entry", "backbone_names", "build_backbone", "hf_cache_candidates",
           "load_torchvision_vgg16", "read_state_dict", "register_backbone", "standin_candidates",
           "torch_cache_candidates", "warn_not_pretrained"]
