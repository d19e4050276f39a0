"""The method interface every registry entry implements.

Minimal contract: `predict(episode) -> Tensor [Q, 2, H, W]` (background, foreground scores at the
episode's resolution; the runner takes the argmax). A method never sees `query_masks` there.

Optional, each switched on by a class attribute:
- `frozen_encoder = True`: at test time the method is `encode(images) -> features` applied per
  image, then `predict_from_features(episode, support_features, query_features)`. The runner then
  encodes each image once and caches the features across episodes, shots, seeds and folds.
- `trainable = True`: `training_losses(episode) -> {"total": loss, ...}`, `parameters()`,
  `state_dict()`, `load_state_dict()`, `load_checkpoint(path)`, `train()`/`eval()`.
"""

from __future__ import annotations

import hashlib

import torch

from .episode import Episode


def tensors_sha256(state_dict: dict) -> str:
    """sha256 over the names and bytes of a state dict's tensors, in order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Method:
    trainable: bool = False
    frozen_encoder: bool = False
    #: True when the encoder started from pretrained weights; None when the method has no encoder.
    pretrained: bool | None = None

    def __init__(self, **config):
        self.config = dict(config)

    # -- the contract ----------------------------------------------------------------------------
    def predict(self, episode: Episode) -> torch.Tensor:
        if not self.frozen_encoder:
            raise NotImplementedError(f"{type(self).__name__} must implement predict()")
        with torch.no_grad():
            return self.predict_from_features(episode, self.encode_each(episode.support_images),
                                              self.encode_each(episode.query_images))

    def encode_each(self, images: torch.Tensor) -> torch.Tensor:
        """Encode image by image, as the runner's feature cache does, so that both paths give
        bitwise-identical features (batched convolutions may round differently)."""
        return torch.cat([self.encode(image[None]) for image in images])

    # -- frozen-encoder methods ------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_from_features(self, episode: Episode, support_features: torch.Tensor,
                              query_features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encoder_sha256(self) -> str:
        """Identifies the encoder's weights, so cached features are never reused across weights."""
        module = getattr(self, "encoder", None)
        weights = module.state_dict() if isinstance(module, torch.nn.Module) else {}
        return hashlib.sha256((type(self).__name__ + tensors_sha256(weights)).encode()).hexdigest()

    # -- housekeeping ----------------------------------------------------------------------------
    def to(self, device) -> "Method":
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(device)
        return self

    def eval(self) -> "Method":
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.eval()
        return self

    def train(self) -> "Method":
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.train()
        return self
