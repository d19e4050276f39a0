"""Segmentation metrics from per-episode counts.

Per episode (one query), over pixels whose label is not 255: intersection and union of the
foreground and of the background between prediction and label, plus predicted and true
foreground pixels. Every metric is recomputed from these integers, so tables never rerun a model.

- class-pooled mIoU (what papers report): per class, sum of foreground intersections / sum of
  foreground unions over its episodes; then the mean over the fold's classes.
- FB-IoU: mean of background and foreground IoU, each pooled over all episodes of the fold.
- per-episode mean IoU: the mean of each episode's own foreground IoU. A different number
  (small objects weigh as much as large ones), reported under its own name.
- PANet's `Metric` (`miou_panet_metric`, `fbiou_panet_metric`): an episode's foreground counts
  only when the query's label holds the class, its background only when the label holds
  background; otherwise the same pooling. Both read the same six counts (the query's true
  background is `bg_intersection + pred_fg - fg_intersection`).
"""

from __future__ import annotations

import numpy as np
import torch

COUNT_COLUMNS = ("fg_intersection", "fg_union", "bg_intersection", "bg_union", "pred_fg", "true_fg")


def episode_counts(prediction: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray,
                   ignore_index: int = 255) -> np.ndarray:
    """prediction [N,H,W] in {0,1}, label [N,H,W] in {0,1,ignore} -> int64 [N, 6] (COUNT_COLUMNS).

    One bincount over (image, label, prediction) codes for the whole batch.
    """
    prediction = _as_numpy(prediction).reshape(len(prediction), -1)
    label = _as_numpy(label).reshape(len(label), -1)
    n = label.shape[0]
    valid = label != ignore_index
    codes = np.arange(n)[:, None] * 4 + (label == 1) * 2 + (prediction == 1)
    table = np.bincount(codes[valid], minlength=4 * n).reshape(n, 4).astype(np.int64)
    true_negative, false_positive, false_negative, true_positive = table.T
    return np.stack([
        true_positive,
        true_positive + false_positive + false_negative,
        true_negative,
        true_negative + false_positive + false_negative,
        true_positive + false_positive,
        true_positive + false_negative,
    ], axis=1)


def _as_numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def per_class_iou(class_ids: np.ndarray, fg_intersection: np.ndarray, fg_union: np.ndarray) -> dict[int, float]:
    class_ids = np.asarray(class_ids)
    return {int(c): _ratio(fg_intersection[class_ids == c].sum(), fg_union[class_ids == c].sum())
            for c in np.unique(class_ids)}


def class_pooled_miou(class_ids, fg_intersection, fg_union) -> float:
    """Mean over classes of each class's pooled foreground IoU (the papers' mIoU); a class with
    nothing to score (empty union in all its episodes) is left out, as the tables' statistics do."""
    per_class = [v for v in per_class_iou(np.asarray(class_ids), np.asarray(fg_intersection),
                                          np.asarray(fg_union)).values() if not np.isnan(v)]
    return float(np.mean(per_class)) if per_class else float("nan")


def fb_iou(fg_intersection, fg_union, bg_intersection, bg_union) -> float:
    return 0.5 * (_ratio(np.sum(fg_intersection), np.sum(fg_union)) + _ratio(np.sum(bg_intersection), np.sum(bg_union)))


def episode_mean_iou(fg_intersection, fg_union) -> float:
    """Mean of per-episode foreground IoU; episodes with an empty union (nothing to score) are skipped."""
    fg_intersection, fg_union = np.asarray(fg_intersection, float), np.asarray(fg_union, float)
    keep = fg_union > 0
    return float(np.mean(fg_intersection[keep] / fg_union[keep])) if keep.any() else float("nan")


def true_background(fg_intersection, bg_intersection, pred_fg) -> np.ndarray:
    """Pixels labelled background (TN + FP) from the counts: bg_intersection + pred_fg - fg_intersection."""
    return np.asarray(bg_intersection) + np.asarray(pred_fg) - np.asarray(fg_intersection)


def panet_miou(class_ids, fg_intersection, fg_union, true_fg) -> float:
    """PANet's Metric.get_mIoU: class-pooled, an episode counted only when its query holds the class."""
    keep = np.asarray(true_fg) > 0
    class_ids, fg_intersection, fg_union = (np.asarray(v)[keep] for v in (class_ids, fg_intersection, fg_union))
    return class_pooled_miou(class_ids, fg_intersection, fg_union) if keep.any() else float("nan")


def panet_fb_iou(fg_intersection, fg_union, bg_intersection, bg_union, pred_fg, true_fg) -> float:
    """PANet's Metric.get_mIoU_binary: foreground pooled over the episodes whose query holds the
    class, background over those whose query holds background; the mean of the two."""
    fg_intersection, fg_union, bg_intersection, bg_union = (np.asarray(v, float) for v in
                                                           (fg_intersection, fg_union, bg_intersection, bg_union))
    has_fg = np.asarray(true_fg) > 0
    has_bg = true_background(fg_intersection, bg_intersection, pred_fg) > 0
    return 0.5 * (_ratio(fg_intersection[has_fg].sum(), fg_union[has_fg].sum())
                  + _ratio(bg_intersection[has_bg].sum(), bg_union[has_bg].sum()))


def scores_from_counts(class_ids, counts) -> dict[str, float]:
    """Every metric above, in points (x100, as tables print them), keyed by the CSV's metric names,
    from each episode's class and its six counts ([N, 6] in COUNT_COLUMNS order)."""
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(COUNT_COLUMNS))
    class_ids = np.asarray(class_ids)
    if len(class_ids) != len(counts):
        raise ValueError(f"{len(class_ids)} class ids for {len(counts)} episodes' counts")
    fg_i, fg_u, bg_i, bg_u, pred_fg, true_fg = counts.T
    return {"miou": 100 * class_pooled_miou(class_ids, fg_i, fg_u),
            "fbiou": 100 * fb_iou(fg_i, fg_u, bg_i, bg_u),
            "episode_miou": 100 * episode_mean_iou(fg_i, fg_u),
            "miou_panet_metric": 100 * panet_miou(class_ids, fg_i, fg_u, true_fg),
            "fbiou_panet_metric": 100 * panet_fb_iou(fg_i, fg_u, bg_i, bg_u, pred_fg, true_fg)}


def scores_from_masks(predictions, labels, class_ids, ignore_index: int = 255) -> dict[str, float]:
    """`scores_from_counts` for your own evaluation loop: one binary prediction and one label
    ({0, 1, ignore_index}) per episode, each [H,W] (sizes may differ between episodes; numpy or
    torch), and each episode's class id."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    counts = [episode_counts(_as_numpy(p)[None], _as_numpy(t)[None], ignore_index)[0]
              for p, t in zip(predictions, labels)]
    return scores_from_counts(class_ids, np.array(counts).reshape(-1, len(COUNT_COLUMNS)))
