"""Vision-transformer backbones through timm: DINOv2 (ViT-S/B/L/g with patch 14, with and without
four register tokens) and DINOv3 (ViT-S/S+/B/L/H+ with patch 16), as patch-token maps.

The forward resizes the image (bilinear) to the nearest multiple of the patch size, runs the
model with `dynamic_img_size` (position embeddings interpolated to the grid), drops the class and
register tokens and returns the final-norm patch tokens as a map [B, C, H/p, W/p]. A method that
wants the encoder at its own input size (GF-SAM: 518) resizes before calling it.

Weights, never downloaded, in this order: `--weights PATH` (Meta's original `.pth` or timm's
`model.safetensors`; timm's own converter maps Meta's key layout), the torch hub cache (where
`torch.hub.load("facebookresearch/dinov2", ...)` leaves `dinov2_vits14_pretrain.pth`), the Hugging
Face cache of timm's repository (`timm/vit_small_patch14_dinov2.lvd142m`). The licence recorded
is the one timm's `config.json` beside the file states. DINOv2 without weights warns and starts
from a random init (`pretrained: false`); DINOv3 checkpoints are gated (a licence to accept at
Meta), so a missing one is a one-line error saying where to put the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .registry import BackboneEntry, hf_cache_candidates, register_backbone


class ViTTokens(nn.Module):
    """A timm ViT whose forward gives its patch tokens as a feature map."""

    def __init__(self, timm_name: str, **overrides):
        super().__init__()
        import timm

        self.model = timm.create_model(timm_name, pretrained=False, dynamic_img_size=True, num_classes=0,
                                       **overrides)
        self.patch = int(self.model.patch_embed.patch_size[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        grid = (max(1, round(height / self.patch)), max(1, round(width / self.patch)))
        size = (grid[0] * self.patch, grid[1] * self.patch)
        if size != (height, width):
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        tokens = self.model.forward_features(images)[:, self.model.num_prefix_tokens:]  # [B, N, C]
        return tokens.transpose(1, 2).reshape(images.shape[0], tokens.shape[-1], *grid)


def _load_timm(module: ViTTokens, state: dict, source: str) -> None:
    """timm's own filter maps Meta's checkpoints (register_tokens, mask_token, other position-grid
    sizes) onto its layout; then every tensor of the model must be there, with its shape."""
    import importlib

    owner = importlib.import_module(type(module.model).__module__)
    state = {key.removeprefix("module.").removeprefix("backbone."): value for key, value in state.items()}
    try:
        state = owner.checkpoint_filter_fn(state, module.model)
        missing, unexpected = module.model.load_state_dict(state, strict=False)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{source}: not a checkpoint of this ViT ({first})") from None
    unexpected = [key for key in unexpected if not key.startswith(("head.", "fc_norm."))]
    if missing or unexpected:
        which = missing or unexpected
        raise InputError(f"{source}: not a checkpoint of this ViT ({'missing' if missing else 'unexpected'} "
                         f"{which[0]!r} and {len(which) - 1} more)")


def _timm_licence(path: Path) -> str | None:
    """The licence in timm's config.json beside a cached model.safetensors (its pretrained_cfg)."""
    config = path.parent / "config.json"
    try:
        document = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    value = document.get("license") or (document.get("pretrained_cfg") or {}).get("license")
    return str(value) if value else None


# (our name, timm architecture, timm pretrained tag, Meta's file prefix, channels)
DINOV2 = (
    ("dinov2_vits14", "vit_small_patch14_dinov2", "lvd142m", "dinov2_vits14", 384),
    ("dinov2_vitb14", "vit_base_patch14_dinov2", "lvd142m", "dinov2_vitb14", 768),
    ("dinov2_vitl14", "vit_large_patch14_dinov2", "lvd142m", "dinov2_vitl14", 1024),
    ("dinov2_vitg14", "vit_giant_patch14_dinov2", "lvd142m", "dinov2_vitg14", 1536),
    ("dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2", "lvd142m", "dinov2_vits14_reg4", 384),
    ("dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2", "lvd142m", "dinov2_vitb14_reg4", 768),
    ("dinov2_vitl14_reg", "vit_large_patch14_reg4_dinov2", "lvd142m", "dinov2_vitl14_reg4", 1024),
    ("dinov2_vitg14_reg", "vit_giant_patch14_reg4_dinov2", "lvd142m", "dinov2_vitg14_reg4", 1536),
)
DINOV3 = (
    ("dinov3_vits16", "vit_small_patch16_dinov3", "lvd1689m", "dinov3_vits16", 384),
    ("dinov3_vits16plus", "vit_small_plus_patch16_dinov3", "lvd1689m", "dinov3_vits16plus", 384),
    ("dinov3_vitb16", "vit_base_patch16_dinov3", "lvd1689m", "dinov3_vitb16", 768),
    ("dinov3_vitl16", "vit_large_patch16_dinov3", "lvd1689m", "dinov3_vitl16", 1024),
    ("dinov3_vith16plus", "vit_huge_plus_patch16_dinov3", "lvd1689m", "dinov3_vith16plus", 1280),
)


def _finder(architecture: str, tag: str, meta_prefix: str):
    def find() -> list[Path]:
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        # Meta's names: dinov2_vits14_pretrain.pth, dinov3_vits16_pretrain_lvd1689m-08c60483.pth
        meta = sorted(checkpoints.glob(f"{meta_prefix}_pretrain*.pth")) if checkpoints.is_dir() else []
        return meta + hf_cache_candidates(f"timm/{architecture}.{tag}")
    return find


def _where(architecture: str, tag: str, meta_prefix: str, gated: bool) -> str:
    licence = ("the checkpoint is gated: accept Meta's DINOv3 licence, download it, then " if gated else "")
    return (f"{licence}pass --weights PATH ({meta_prefix}_pretrain.pth or timm's model.safetensors), or put it "
            f"in {torch.hub.get_dir()}/checkpoints/ as {meta_prefix}_pretrain*.pth or in the Hugging Face cache as "
            f"timm/{architecture}.{tag}")


for _name, _architecture, _tag, _prefix, _channels in DINOV2:
    register_backbone(BackboneEntry(
        _name, (lambda a=_architecture: ViTTokens(a)), _channels, 14, "dinov2", "LVD-142M",
        _finder(_architecture, _tag, _prefix), _load_timm, missing="warn",
        where=_where(_architecture, _tag, _prefix, gated=False), licence=_timm_licence,
        description=f"DINOv2 {_architecture} (timm), patch tokens at stride 14"))
for _name, _architecture, _tag, _prefix, _channels in DINOV3:
    register_backbone(BackboneEntry(
        _name, (lambda a=_architecture: ViTTokens(a)), _channels, 16, "dinov3", "LVD-1689M",
        _finder(_architecture, _tag, _prefix), _load_timm, missing="error",
        where=_where(_architecture, _tag, _prefix, gated=True), licence=_timm_licence,
        description=f"DINOv3 {_architecture} (timm), patch tokens at stride 16; gated checkpoint"))

# A tiny DINOv2-shaped ViT (4 blocks of width 96) for tests and CPU smoke runs: no weights exist for
# it, so it is the seeded random init, said once like any unpretrained encoder.
register_backbone(BackboneEntry(
    "vit-tiny14", lambda: ViTTokens("vit_small_patch14_dinov2", embed_dim=96, depth=4, num_heads=3),
    96, 14, "test", "", lambda: [], _load_timm, missing="warn", where="no published weights: a test-size ViT",
    description="DINOv2-shaped ViT, 4 blocks of width 96, random init (tests, CPU smoke runs)"))
