"""Metrics: hand-computed episodes, an independent per-pixel implementation, pooled vs per-episode."""

import numpy as np
import pytest

from fsseg_bench.metrics import (class_pooled_miou, episode_counts, episode_mean_iou, fb_iou, per_class_iou)


def test_counts_of_a_hand_computed_episode():
    label = np.array([[1, 1, 0, 0],
                      [1, 255, 0, 0],
                      [0, 0, 0, 255]])
    prediction = np.array([[1, 0, 1, 0],
                           [1, 1, 0, 0],
                           [0, 0, 0, 1]])
    # valid pixels: 10. TP = (0,0),(1,0) = 2; FN = (0,1) = 1; FP = (0,2) = 1; TN = 6.
    counts = episode_counts(prediction[None], label[None])[0]
    assert counts.tolist() == [2, 4, 6, 8, 3, 3]  # fg I, fg U, bg I, bg U, pred fg, true fg


def per_pixel_counts(prediction, label, ignore=255):
    """Independent slow implementation: a loop over pixels."""
    rows = []
    for pred, lab in zip(prediction, label):
        tp = fp = fn = tn = 0
        for p, l in zip(pred.ravel().tolist(), lab.ravel().tolist()):
            if l == ignore:
                continue
            if l == 1 and p == 1:
                tp += 1
            elif l == 0 and p == 1:
                fp += 1
            elif l == 1 and p == 0:
                fn += 1
            else:
                tn += 1
        rows.append([tp, tp + fp + fn, tn, tn + fp + fn, tp + fp, tp + fn])
    return np.array(rows)


def slow_pooled_miou(class_ids, counts):
    ious = []
    for c in sorted(set(class_ids)):
        i = sum(row[0] for cid, row in zip(class_ids, counts) if cid == c)
        u = sum(row[1] for cid, row in zip(class_ids, counts) if cid == c)
        ious.append(i / u)
    return sum(ious) / len(ious)


def test_vectorised_counts_agree_with_per_pixel_loop_on_random_masks():
    rng = np.random.default_rng(0)
    n = 40
    label = (rng.random((n, 23, 31)) < 0.3).astype(np.int64)
    label[rng.random((n, 23, 31)) < 0.1] = 255  # void regions
    label[:, 5:9, 5:12] = 255  # and a block
    prediction = (rng.random((n, 23, 31)) < 0.4).astype(np.int64)
    fast, slow = episode_counts(prediction, label), per_pixel_counts(prediction, label)
    assert np.array_equal(fast, slow)
    class_ids = rng.integers(1, 6, size=n)
    assert class_pooled_miou(class_ids, fast[:, 0], fast[:, 1]) == pytest.approx(slow_pooled_miou(class_ids, slow), abs=1e-9)
    fb = 0.5 * (slow[:, 0].sum() / slow[:, 1].sum() + slow[:, 2].sum() / slow[:, 3].sum())
    assert fb_iou(*fast[:, :4].T) == pytest.approx(fb, abs=1e-9)


def test_pooled_miou_differs_from_per_episode_mean():
    # Class 1: a large object segmented well (90/100) and a small one missed (0/10).
    # Pooled: 90/110 = 0.818; per-episode mean: (0.9 + 0) / 2 = 0.45.
    class_ids = np.array([1, 1])
    fg_i, fg_u = np.array([90, 0]), np.array([100, 10])
    assert class_pooled_miou(class_ids, fg_i, fg_u) == pytest.approx(90 / 110)
    assert episode_mean_iou(fg_i, fg_u) == pytest.approx(0.45)


def test_mean_over_classes_not_over_episodes():
    # Class 1 has three episodes at IoU 1, class 2 one at IoU 0: mIoU is 0.5, not 0.75.
    class_ids = np.array([1, 1, 1, 2])
    fg_i, fg_u = np.array([5, 5, 5, 0]), np.array([5, 5, 5, 5])
    assert per_class_iou(class_ids, fg_i, fg_u) == {1: 1.0, 2: 0.0}
    assert class_pooled_miou(class_ids, fg_i, fg_u) == 0.5


def test_empty_union_episodes_are_skipped_in_the_episode_mean():
    assert episode_mean_iou([0, 3], [0, 4]) == pytest.approx(0.75)
