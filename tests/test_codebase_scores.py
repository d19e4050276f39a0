"""Each codebase's score, exactly: PANet's FB-IoU, the query's void rule, cells over fewer classes
than the fold's, OpenCV's bilinear resize (8-bit and float32) and PFENet's normalisation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from fsseg_bench import metrics, stats
from fsseg_bench.metrics import COUNT_COLUMNS, episode_counts
from fsseg_bench.preprocess import PreparedLabel, normalise
from fsseg_bench.protocol import load_protocol
from fsseg_bench.resample import cv2_bilinear, cv2_bilinear_u8
from fsseg_bench.scoring import scoring_label


# --- PANet's FB-IoU (Metric.get_mIoU_binary) ----------------------------------------------------

def _panet_binary_slow(episodes) -> float:
    """PANet's Metric.record + get_mIoU_binary with pixel sets: label j in {0 (background), 1} is
    recorded only when the target holds pixels of j; tp/fp/fn summed over episodes (nansum), the
    foreground summed over classes, IoU of each of the two, their mean."""
    totals = {0: [0, 0, 0], 1: [0, 0, 0]}
    for prediction, label in episodes:
        for j in (0, 1):
            predicted = {tuple(p) for p in np.argwhere((prediction == j) & (label != 255))}
            target = {tuple(p) for p in np.argwhere(label == j)}
            if target:
                totals[j][0] += len(predicted & target)
                totals[j][1] += len(predicted - target)
                totals[j][2] += len(target - predicted)
    return float(np.mean([tp / (tp + fp + fn) for tp, fp, fn in totals.values()]))


def _records(counts, class_ids) -> pd.DataFrame:
    frame = pd.DataFrame(np.asarray(counts), columns=COUNT_COLUMNS)
    frame["class_id"], frame["seed"] = class_ids, 0
    return frame


def test_panet_fbiou_matches_a_slow_pixel_set_implementation():
    rng = np.random.default_rng(7)
    episodes = []
    for i in range(60):
        label = rng.choice([0, 1, 255], size=(5, 6), p=[0.5, 0.4, 0.1]).astype(np.uint8)
        if i % 4 == 0:
            label[label == 1] = 0      # a query without its class
        if i % 7 == 0:
            label[label == 0] = 1      # a query without background
        episodes.append((rng.integers(0, 2, size=(5, 6)), label))
    counts = episode_counts(np.stack([p for p, _ in episodes]), np.stack([l for _, l in episodes]))
    records = _records(counts, [1 + i % 3 for i in range(len(episodes))])
    expected = _panet_binary_slow(episodes)
    assert stats.observed(records, "fbiou_panet_metric") == pytest.approx(expected, abs=1e-12)
    assert metrics.panet_fb_iou(*(records[c] for c in ("fg_intersection", "fg_union", "bg_intersection", "bg_union",
                                                       "pred_fg", "true_fg"))) == pytest.approx(expected, abs=1e-12)
    # The pooled FB-IoU is another number on these episodes.
    assert abs(stats.observed(records, "fbiou") - expected) > 1e-3


def test_panet_fbiou_hand_cases():
    # Columns: fg_i, fg_u, bg_i, bg_u, pred_fg, true_fg.
    # Episode 1: 4 px, true fg 2 (both predicted), 1 background pixel predicted fg: fg 2/3, bg 1/2.
    # Episode 2: the query lacks the class (true fg 0), 2 of 4 px predicted fg: PANet skips its
    #   foreground (the pooled FB-IoU counts its 2 false positives), keeps its background 2/4.
    # Episode 3: no background (4 px all fg, 3 predicted): PANet skips its background.
    hand = _records([[2, 3, 1, 2, 3, 2], [0, 2, 2, 4, 2, 0], [3, 4, 0, 1, 3, 4]], [1, 1, 1])
    fg_panet, bg_panet = (2 + 3) / (3 + 4), (1 + 2) / (2 + 4)
    fg_pooled, bg_pooled = (2 + 0 + 3) / (3 + 2 + 4), (1 + 2 + 0) / (2 + 4 + 1)
    assert stats.observed(hand, "fbiou_panet_metric") == pytest.approx((fg_panet + bg_panet) / 2)
    assert stats.observed(hand, "fbiou") == pytest.approx((fg_pooled + bg_pooled) / 2)
    assert metrics.true_background([2, 0, 3], [1, 2, 0], [3, 2, 3]).tolist() == [2, 4, 0]
    # Intervals exist for it like for every metric (the bootstrap reads the same sums).
    intervals = stats.fold_intervals(pd.concat([hand] * 5, ignore_index=True), "fbiou_panet_metric", 200,
                                     np.random.default_rng(0))
    assert intervals.seeds.value == pytest.approx((fg_panet + bg_panet) / 2)


def test_panet_protocols_choose_panets_fbiou_for_their_tables():
    from fsseg_bench.report.tables import column_metric

    for name in ("pascal5i-panet", "coco20i-panet"):
        protocol = load_protocol(name)
        assert (protocol.miou_metric, protocol.fbiou_metric) == ("miou_panet_metric", "fbiou_panet_metric")
    assert load_protocol("pascal5i-hsnet").fbiou_metric == "fbiou"
    assert column_metric((1, "fbiou"), "miou_panet_metric", "fbiou_panet_metric") == ("fbiou_panet_metric", "mean")
    assert column_metric((1, "0"), "miou_panet_metric", "fbiou_panet_metric") == ("miou_panet_metric", "0")


# --- The query's void label ---------------------------------------------------------------------

def test_query_void_is_ignored_or_background_per_protocol():
    label = np.array([[1, 255], [0, 1]], np.uint8)
    prepared = PreparedLabel(torch.from_numpy(label.copy()), label, (2, 2))
    hsnet_voc, hsnet_coco = load_protocol("pascal5i-hsnet"), load_protocol("coco20i-hsnet")
    assert (hsnet_voc.query_ignore, hsnet_coco.query_ignore) == ("ignore", "background")
    assert scoring_label(prepared, 1, hsnet_voc).tolist() == [[1, 255], [0, 1]]
    assert scoring_label(prepared, 1, hsnet_coco).tolist() == [[1, 0], [0, 1]]
    # Counts: predicting foreground everywhere, the void pixel is a false positive only on COCO.
    everywhere = np.ones((1, 2, 2), np.int64)
    voc = episode_counts(everywhere, scoring_label(prepared, 1, hsnet_voc)[None])[0]
    coco = episode_counts(everywhere, scoring_label(prepared, 1, hsnet_coco)[None])[0]
    assert voc.tolist() == [2, 3, 0, 1, 3, 2] and coco.tolist() == [2, 4, 0, 2, 4, 2]


def test_padding_is_never_scored_even_when_void_is_background():
    protocol = dataclasses.replace(load_protocol("coco20i-hsnet"), resize="longer-side-pad")
    # A 3x3 input whose content is the left 2x1 column: (0, 0) the class, (1, 0) void (crowd); the
    # rest is padding (255 from the resize). Void inside counts as background, padding never counts.
    resized = np.array([[1, 255, 255], [255, 255, 255], [255, 255, 255]], np.uint8)
    prepared = PreparedLabel(torch.from_numpy(resized), resized[:2, :1], (2, 1))
    assert scoring_label(prepared, 1, protocol).tolist() == [[1, 255, 255], [0, 255, 255], [255, 255, 255]]
    ignoring = dataclasses.replace(protocol, query_ignore="ignore")
    assert scoring_label(prepared, 1, ignoring).tolist() == [[1, 255, 255], [255, 255, 255], [255, 255, 255]]


def test_every_builtin_protocol_states_its_void_rule():
    from fsseg_bench.protocol import list_protocols

    rules = {name: load_protocol(name).query_ignore for name in list_protocols()}
    assert rules["coco20i-hsnet"] == rules["fss1000-hsnet"] == rules["coco20i-panet"] == "background"
    assert all(rules[n] == "ignore" for n in rules if n.startswith(("pascal5i", "synthetic5i", "coco20i-pfenet")))


# --- Cells over fewer classes than the fold's --------------------------------------------------

def _partial_records() -> pd.DataFrame:
    rows = []
    for class_id, (inter, union) in {1: (2, 4), 2: (3, 4)}.items():
        for seed in (0, 1):
            rows.append({"fg_intersection": inter, "fg_union": union, "bg_intersection": 5, "bg_union": 7,
                         "pred_fg": inter + 1, "true_fg": inter + 1, "class_id": class_id, "seed": seed,
                         "index": class_id})
    frame = pd.DataFrame(rows)
    return frame.assign(protocol="toy", method="m", fold=0, shot=1, limit=5, pretrained=True, other_shot=False,
                        fold_classes=5)


def test_cells_over_fewer_classes_are_marked_in_every_format():
    from fsseg_bench.report.summary import summarise
    from fsseg_bench.report.tables import csv_table, latex_table, markdown_table

    summary = summarise(_partial_records(), resamples=50)
    cell = summary[(summary.metric == "miou") & (summary.fold == "0")].iloc[0]
    assert (cell.n_classes, cell.fold_classes) == (2, 5)
    assert cell.value == pytest.approx(100 * (0.5 + 0.75) / 2)  # over the 2 classes present, not 5
    text = markdown_table(summary)
    assert "62.5" in text and "[2/5]" in text and "[n/N]" in text
    assert "[2/5]" in latex_table(summary)
    csv = pd.read_csv(__import__("io").StringIO(csv_table(summary)))
    assert {"n_classes", "fold_classes"} <= set(csv.columns)
    assert csv[(csv.metric == "miou") & (csv.fold.astype(str) == "0")]["n_classes"].iloc[0] == 2
    full = summarise(_partial_records().assign(fold_classes=2), resamples=50)
    assert "[2/2]" not in markdown_table(full) and "[n/N]" not in markdown_table(full)


def test_the_report_warns_of_cells_over_fewer_classes():
    from fsseg_bench.report.html import honesty_warnings
    from fsseg_bench.report.summary import summarise

    records = _partial_records()
    warnings = honesty_warnings(summarise(records, resamples=50), records)
    assert any("fewer classes than the fold" in w and "m at 1 shot" in w for w in warnings)


def test_a_limited_run_records_its_folds_classes(tmp_path, capsys):
    import json

    from fsseg_bench.cli import main

    assert main(["run", "--protocol", "synthetic5i", "--method", "support-copy", "--fold", "1", "--shot", "1",
                 "--seed", "1234", "--limit", "3", "--results", str(tmp_path / "r"), "--quiet"]) == 0
    info = json.loads(next((tmp_path / "r").glob("runs/*/*/*/run.json")).read_text())
    assert info["fold_classes"] == [6, 7, 8, 9, 10]
    capsys.readouterr()
    assert main(["table", "--results", str(tmp_path / "r"), "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    classes = len({json.loads(line)["class_id"] for line in
                   next((tmp_path / "r").glob("runs/*/*/*/records.jsonl")).read_text().splitlines()})
    assert f"[{classes}/5]" in out


# --- OpenCV's INTER_LINEAR -----------------------------------------------------------------------

def test_cv2_bilinear_u8_by_hand():
    # 1x2 -> 1x4: positions -0.25, 0.25, 0.75, 1.25; fractions 0 (clamped), .25, .75, 0 (clamped).
    # Horizontal in 1/2048: 10*2048, 10*1536 + 20*512, 10*512 + 20*1536, 20*2048. The vertical pass
    # (one row, weight 2048): ((v >> 4) * 2048 >> 16) then (x + 2) >> 2.
    row = np.array([[10, 20]], np.uint8)
    got = cv2_bilinear_u8(row, (1, 4))[0].tolist()
    horizontal = [10 * 2048, 10 * 1536 + 20 * 512, 10 * 512 + 20 * 1536, 20 * 2048]
    assert got == [(((h >> 4) * 2048 >> 16) + 2) >> 2 for h in horizontal] == [10, 13, 18, 20]
    # The fixed point truncates where float rounding would not: 1x2 [0, 255] -> 1x3.
    assert cv2_bilinear_u8(np.array([[0, 255]], np.uint8), (1, 3))[0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError):
        cv2_bilinear_u8(np.zeros((2, 2), np.float32), (3, 3))


def test_pfenet_normalises_on_the_pixel_range_in_float32():
    image = np.full((1, 1, 3), 128, np.uint8)
    pixel = normalise(image, order="pixel-range")[:, 0, 0].numpy()
    expected = (np.float32(128) - np.float32(0.485 * 255)) / np.float32(0.229 * 255)
    assert pixel[0] == expected
    assert load_protocol("pascal5i-pfenet").normalise == "pixel-range"
    assert load_protocol("pascal5i-hsnet").normalise == "unit-range"
    unit = normalise(image)[:, 0, 0].numpy()
    assert np.allclose(unit, pixel, atol=1e-5) and not np.array_equal(unit, pixel)


def _pfenet_sizes(rng, n):
    from fsseg_bench.preprocess import pfenet_content_size

    for _ in range(n):
        h, w = (int(v) for v in rng.integers(100, 501, 2))
        if max(h, w) <= 473:
            h = 500
        yield (h, w), pfenet_content_size((h, w), 473)


def test_cv2_bilinear_equals_opencv_bit_for_bit():
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (the test extra) is not installed")
    rng = np.random.default_rng(2026)
    # PFENet's resize: float32 images of VOC sizes to a longer side of 473, floored to 8.
    for (h, w), (oh, ow) in _pfenet_sizes(rng, 40):
        image = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
        expected = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(cv2_bilinear(image, (oh, ow)), expected), ((h, w), (oh, ow))
    # Random sizes, up and down, sources at least 48 px wide (narrower: see cv2_bilinear).
    for _ in range(150):
        h, oh, ow = (int(v) for v in rng.integers(2, 260, 3))
        w = int(rng.integers(48, 260))
        image = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
        expected = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(cv2_bilinear(image, (oh, ow)), expected), ((h, w), (oh, ow))
    # 8-bit images, any size, one or three channels, the exact-2x shrink included.
    sizes = [((40, 60), (20, 30)), ((7, 9), (7, 9))] + [
        (tuple(int(v) for v in rng.integers(2, 200, 2)), tuple(int(v) for v in rng.integers(2, 300, 2)))
        for _ in range(200)]
    for (h, w), (oh, ow) in sizes:
        channels = int(rng.choice([1, 3]))
        image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        expected = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_LINEAR).reshape(oh, ow, channels)
        assert np.array_equal(cv2_bilinear_u8(image, (oh, ow)).reshape(oh, ow, channels), expected), ((h, w), (oh, ow))


def test_episode_lists_take_the_datasets_class_range(tmp_path):
    import json

    from fsseg_bench.errors import InputError
    from fsseg_bench.episodes import read_episode_list

    path = tmp_path / "coco.jsonl"
    path.write_text(json.dumps({"index": 0, "class_id": 45, "query": ["q"], "support": ["s"]}) + "\n")
    assert read_episode_list(path, 80)[0][0].class_id == 45  # a COCO class: --episode-list on COCO-20i
    with pytest.raises(InputError, match=r"coco.jsonl:1: class_id must be 1..20"):
        read_episode_list(path, 20)
