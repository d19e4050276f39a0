"""SAM's image encoders (Meta's `segment-anything` package, the optional extra `fsseg-bench[sam]`)
as backbones: the image embedding [B, 256, S/16, S/16] of a 1024-px (S) input.

The forward does what SAM's predictor does before its encoder: the longer side resized to S
(`ResizeLongestSide`: bilinear with antialiasing on tensors, `int(side * scale + 0.5)`), then zero
padding to S x S at the bottom and right. SAM normalises pixels with mean (123.675, 116.28, 103.53)
and std (58.395, 57.12, 57.375), which are ImageNet's x 255: the harness's ImageNet-normalised
images are already SAM's input. The module keeps the whole `Sam` (`.sam`: prompt encoder and mask
decoder) for methods that prompt it; `input_size(h, w)` gives the unpadded size for
`sam.postprocess_masks`.

Weights (never downloaded): a method's `sam_weights`, else Meta's file in the torch hub cache
(`sam_vit_h_4b8939.pth`, `sam_vit_l_0b3195.pth`, `sam_vit_b_01ec64.pth`). Without one the run says
so once, saying where to put the file, and records `pretrained: false` (as for every encoder that is
not gated); a path given that does not exist is a one-line error. `sam-tiny` (2 blocks of width 64
at 128 px) is the random init for tests and CPU smoke runs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .registry import BackboneEntry, register_backbone

# name: (embed dim, depth, heads, global attention blocks, input side, window, Meta's file)
SAM_VARIANTS = {
    "sam_vit_b": (768, 12, 12, (2, 5, 8, 11), 1024, 14, "sam_vit_b_01ec64.pth"),
    "sam_vit_l": (1024, 24, 16, (5, 11, 17, 23), 1024, 14, "sam_vit_l_0b3195.pth"),
    "sam_vit_h": (1280, 32, 16, (7, 15, 23, 31), 1024, 14, "sam_vit_h_4b8939.pth"),
    "sam-tiny": (64, 2, 2, (1,), 128, 4, None),
}
PROMPT_DIM = 256


def _segment_anything():
    try:
        from segment_anything import modeling
    except ImportError:
        raise InputError("SAM backbones need Meta's segment-anything package: pip install 'fsseg-bench[sam]'") from None
    return modeling


def build_sam_model(variant: str) -> nn.Module:
    """A `Sam` of the variant's shape (random init), as `segment_anything.build_sam` builds it."""
    modeling = _segment_anything()
    dim, depth, heads, global_blocks, side, window, _ = SAM_VARIANTS[variant]
    embedding = side // 16
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=depth, embed_dim=dim, img_size=side, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=heads, patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=global_blocks,
            window_size=window, out_chans=PROMPT_DIM),
        prompt_encoder=modeling.PromptEncoder(embed_dim=PROMPT_DIM, image_embedding_size=(embedding, embedding),
                                              input_image_size=(side, side), mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3, transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM,
                                                                            mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


class SamEmbeddings(nn.Module):
    def __init__(self, variant: str):
        super().__init__()
        self.sam = build_sam_model(variant)
        self.side = self.sam.image_encoder.img_size
        self.embedding_shape = (PROMPT_DIM, self.side // 16, self.side // 16)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.side / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.input_size(*images.shape[-2:])
        if size != tuple(images.shape[-2:]):
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        images = F.pad(images, (0, self.side - size[1], 0, self.side - size[0]))
        return self.sam.image_encoder(images)


def _load_sam(module: SamEmbeddings, state: dict, source: str) -> None:
    state = {key.removeprefix("module."): value for key, value in state.items()}
    missing, unexpected = module.sam.load_state_dict(state, strict=False)
    if missing or unexpected:
        which = missing or unexpected
        raise InputError(f"{source}: not a checkpoint of this SAM ({'missing' if missing else 'unexpected'} "
                         f"{which[0]!r} and {len(which) - 1} more)")


def _finder(file_name: str | None):
    def find() -> list[Path]:
        if file_name is None:
            return []
        path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        return [path] if path.is_file() else []
    return find


for _name, (_dim, _depth, _heads, _global, _side, _window, _file) in SAM_VARIANTS.items():
    register_backbone(BackboneEntry(
        _name, (lambda v=_name: SamEmbeddings(v)), PROMPT_DIM, 16, "sam" if _file else "test",
        "SA-1B" if _file else "", _finder(_file), _load_sam, missing="warn",
        where=(f"none given and no {_file} in {torch.hub.get_dir()}/checkpoints/: put Meta's file there or pass "
               f"its path as the method's sam_weights option") if _file else "no published weights: a test-size SAM",
        description=f"SAM {_name} image encoder, {_side}-px input, 256-channel embedding at stride 16"))
