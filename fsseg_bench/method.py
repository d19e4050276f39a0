"""The method interface every registry entry implements.

Minimal contract: `predict(episode) -> Tensor [Q, 2, H, W]` (background, foreground scores at the
episode's resolution; the runner takes the argmax). A method never sees `query_masks` there.

Optional, each switched on by a class attribute:
- `frozen_encoder = True`: at test time the method is `encode(images) -> features` applied per
  image, then `predict_from_features(episode, support_features, query_features)`. The runner then
  encodes each image once and caches the features across episodes, shots, seeds and folds.
  A method may add a second, query-only frozen encoder, `encode_query(images) -> features` (GF-SAM's
  SAM embedding: only queries are prompted): the runner caches it per image like `encode`, runs
  it only on images that are some episode's query, and gives the method a query's features as
  `encode`'s and `encode_query`'s concatenated along channels (so both must share a spatial size;
  `packing.py` makes [N, D, 1, 1] of anything).
- `support_statistics = True` (with a frozen encoder): what a support contributes depends only on
  its own features and mask, `support_statistic(features [1,C,h,w], mask [H,W]) -> Tensor`, and
  the prediction on those, `predict_from_statistics(episodes, statistics [B,S,...], query_features
  [B,Q,C,h,w])`. The runner then caches each (image, class) statistic too (prototype methods).
- `trainable = True`: `training_losses(episode) -> {"total": loss, ...}`, `parameters()`,
  `state_dict()`, `load_state_dict()`, `load_checkpoint(path)`, `train()`/`eval()`; optionally
  `training_optimizer(schedule) -> (optimizer, lr scheduler)` when the paper trains otherwise than
  the protocol's SGD schedule (HSNet: Adam); optionally `initialise(seed)`, which redraws the
  randomly initialised trainable parts, so a training seed varies the initialisation too.
"""

from __future__ import annotations

import os

import torch

from .cards import MethodCard
from .episode import Episode


class Method:
    trainable: bool = False
    frozen_encoder: bool = False
    support_statistics: bool = False
    #: True when the encoder started from pretrained weights; None when the method has no encoder.
    pretrained: bool | None = None
    #: Environment variables the method reads: their values enter its runs' identity.
    environment: tuple[str, ...] = ()
    #: What the method's own parameters were fitted on, and whether it reads class names or adapts at
    #: test time (`cards.MethodCard`); what its encoders were pretrained on is `pretraining`, set from
    #: the backbones it built (empty for a random init). Both are shown beside its numbers.
    card: MethodCard = MethodCard()
    pretraining: tuple[str, ...] = ()

    def __init__(self, **config):
        self.config = dict(config)

    # -- the contract ----------------------------------------------------------------------------
    def predict(self, episode: Episode) -> torch.Tensor:
        if not self.frozen_encoder:
            raise NotImplementedError(f"{type(self).__name__} must implement predict()")
        with torch.no_grad():
            return self.predict_from_features(episode, self.encode_each(episode.support_images),
                                              self.query_features(episode.query_images))

    def query_features(self, images: torch.Tensor) -> torch.Tensor:
        """A query's features as the runner gives them: `encode`, image by image, and the query-only
        encoder's output (`encode_query`, when the method has one) concatenated along channels."""
        base = self.encode_each(images)
        if not callable(getattr(self, "encode_query", None)):
            return base
        return torch.cat([base, torch.cat([self.encode_query(image[None]) for image in images])], dim=1)

    def predict_batch_from_features(self, episodes: list[Episode], support_features: torch.Tensor,
                                    query_features: torch.Tensor) -> torch.Tensor:
        """Several episodes of one shot count at once: support_features [B,S,C,h,w], query_features
        [B,Q,C,h,w] -> scores [B,Q,2,H,W]. The runner calls this for frozen-encoder methods; the
        default loops over `predict_from_features`, a method may vectorise it."""
        return torch.stack([self.predict_from_features(e, s, q)
                            for e, s, q in zip(episodes, support_features, query_features)])

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


def method_environment(method) -> dict[str, str | None]:
    """The values of the environment variables a method declares it reads (`environment = (...)`);
    they enter its runs' identity. Reads it does not declare are not tracked."""
    from .errors import InputError

    names = getattr(method, "environment", ()) or ()
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise InputError(f"method {getattr(method, 'registry_name', type(method).__name__)!r}: `environment` must "
                         f"be a tuple of variable names, got {names!r}")
    return {name: os.environ.get(name) for name in sorted(set(names))}
