"""GF-SAM's pieces against hand-computed cases, its inputs against the originals' conversions, and
the whole method through the runner's cache (cached = uncached, bit for bit). The comparison with
GF-SAM's own code is tests/equivalence/gfsam_masks.py (it needs the GF-SAM checkout)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fsseg_bench.cli import main
from fsseg_bench.preprocess import IMAGENET_MEAN, IMAGENET_STD
from fsseg_bench.registry import get_entry, load_methods

from helpers import records_of, run_args

pytest.importorskip("segment_anything")

load_methods([])
gfsam = sys.modules[get_entry("gf-sam").factory.__module__]  # built-in plugins are loaded by path


def test_every_8bit_level_survives_the_normalisation_and_gfsams_truncation():
    levels = torch.arange(256, dtype=torch.float32)
    image = levels.view(1, 1, 16, 16).expand(1, 3, 16, 16)
    normalised = (image / 255 - torch.as_tensor(IMAGENET_MEAN)[:, None, None]) / torch.as_tensor(IMAGENET_STD)[:, None, None]
    unit = gfsam.unit_images(normalised)
    assert torch.equal(unit, image / 255)  # bitwise ToTensor's x/255
    assert torch.equal(gfsam.sam_pixels(unit), image.to(torch.uint8))


def test_encoder_resize_is_torchvisions_shorter_side_resize():
    unit = torch.rand(1, 3, 100, 150)
    assert gfsam.encoder_resize(unit, 518, False).shape[-2:] == (518, 777)  # int(518 * 150 / 100)
    assert gfsam.encoder_resize(unit, 518, False, patch=14).shape[-2:] == (518, 770)  # floored to 55 x 14
    assert gfsam.encoder_resize(torch.rand(1, 3, 1024, 1024), 518, False).shape[-2:] == (518, 518)
    flat = torch.full((1, 3, 8, 8), 0.5)
    expected = (0.5 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(gfsam.encoder_resize(flat, 14, False)[0, 0], torch.full((14, 14), float(expected)))


def test_pairwise_cosine_by_hand():
    query = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])          # two query tokens
    support = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]]])  # three support tokens (one zero)
    cosine = gfsam.pairwise_cosine(query, support)
    expected = torch.tensor([[[1.0, 2 ** -0.5], [0.0, 2 ** -0.5], [0.0, 0.0]]])
    assert cosine.shape == (1, 3, 2) and torch.allclose(cosine, expected, atol=1e-6)


def test_masked_priors_by_hand():
    """A 1x2 grid, one support whose mask covers its first token only: max = the cosine with that
    token; mean = that cosine / 2 tokens / (mask fraction 1/2)."""
    similarity = torch.tensor([[[0.8, -0.2], [0.1, 0.9]]])  # support token m (rows) x query token n
    mask = torch.tensor([[[1.0, 0.0]]])                      # [1, H=1, W=2]
    maximum, mean = gfsam.masked_priors([similarity], mask[None], (1, 2))
    assert torch.allclose(maximum, torch.tensor([[[0.8, 0.0]]]))  # max over (0.8, 0) and (-0.2, 0)
    assert torch.allclose(mean, torch.tensor([[[0.8, -0.2]]]) / 2 / (0.5 + 1e-7))


def test_point_map_and_selection_by_hand():
    max_prior = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])
    mean_prior = torch.tensor([[[0.0, 0.5], [1.0, 0.9]]])
    negative = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])  # normalised: 0, 0, 0, 1 -> beats the last token
    candidates = gfsam.point_map(max_prior, mean_prior, negative)
    assert torch.allclose(candidates, torch.tensor([[[0.0, 0.5], [1.0, 0.0]]]), atol=1e-5)
    hot, points = gfsam.select_points(candidates, max_points=128)  # sum 1.5 -> int() 1 point
    assert hot.tolist() == [[0, 0], [1, 0]] and points.tolist() == [[0, 1]]  # (x, y)
    hot, points = gfsam.select_points(candidates * 3, max_points=128)  # sum 4.5 -> 4 points, ordered by x then y
    assert points.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert gfsam.select_points(candidates * 3, max_points=2)[1].tolist() == [[0, 1], [1, 0]]
    assert gfsam.select_points(candidates / 10, max_points=128)[1].tolist() == [[0, 1]]  # 0 < sum < 1: one point
    assert len(gfsam.select_points(torch.zeros(1, 2, 2), max_points=128)[1]) == 0


def test_prompt_coordinates_scale_to_sams_frame_and_truncate():
    coords = gfsam.prompt_coordinates(np.array([[1, 0], [36, 36]]), (37, 37), 1024)
    assert coords.dtype == torch.int32
    assert coords.tolist() == [[27, 0], [996, 996]]  # int(1024 / 37) = 27, int(36 * 1024 / 37) = 996


def test_mask_clusters_are_the_weak_components_of_mask_covers_point():
    hot = np.array([[1, 1, 0], [0, 0, 1]])
    points = np.argwhere(hot.T > 0)  # (x, y): (0,0), (1,0), (2,1)
    masks = torch.zeros(3, 1, 2, 3, dtype=torch.bool)
    masks[0, 0, 0, 0] = True        # mask 0 covers point 0
    masks[1, 0, 0, 0:2] = True      # mask 1 covers points 0 and 1
    masks[2, 0, 1, 2] = True        # mask 2 covers point 2 only
    count, labels = gfsam.mask_clusters(masks, points, hot)
    assert count == 2 and labels.tolist() == [0, 0, 1]


def test_grow_clusters_by_hand():
    """One cluster of two masks on a 1x4 grid, positive region = the first two cells. Mask A (cells
    0,1) has the higher mean margin and joins; mask B (cells 1,2,3) then adds cells 2,3, both
    negative, and stays out; the cluster's score is B's (the last tried): 0 - 2."""
    positive = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    negative = torch.full((1, 1, 4), 0.5)
    masks = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]], [[[0.0, 1.0, 1.0, 1.0]]]])
    foreground, scores = gfsam.grow_clusters(masks, torch.tensor([0, 0]), 1, positive, negative)
    assert foreground.tolist() == [1, 0]
    assert scores.tolist() == [-2.0, -2.0]


def test_merge_masks_union_of_selected_else_best_candidate():
    masks = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    masks[0, 0, 0, 0] = masks[1, 0, 1, 1] = masks[2, 0, 0, 1] = True
    union = gfsam.merge_masks(masks, torch.tensor([1, 1, 0]), torch.zeros(3))
    assert union[0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    fallback = gfsam.merge_masks(masks, torch.tensor([2, 0, 2]), torch.tensor([5.0, 9.0, 1.0]))
    assert fallback[0].tolist() == [[1.0, 0.0], [0.0, 0.0]]  # mask 1 scores highest but is dropped (0)


def test_an_empty_support_set_gets_the_centre_square():
    empty = torch.zeros(2, 40, 48, dtype=torch.long)
    empty[0, 0, 0] = 255  # void is not the class
    masks = gfsam.support_masks_or_centre(empty)
    assert masks.shape == (2, 1, 40, 48) and masks.sum() == 2 * 14 * 14
    assert masks[1, 0, 13:27, 17:31].all()
    one = empty.clone()
    one[1, 5, 5] = 1
    assert gfsam.support_masks_or_centre(one).sum() == 1  # one shot with the class: nothing added


def test_gfsam_through_the_cache_equals_the_uncached_path(synthetic_root, tmp_path):
    """Both encoders (pre-norm ViT tokens, SAM's embedding) packed per image: cached and uncached
    records equal bit for bit (the disk-served path of packed features: test_backbones); a non-ViT matching backbone is one line, exit 2."""
    common = ["--method", "gf-sam", "--option", "backbone=vit-tiny14", "--option", "sam=sam-tiny",
              "--option", "encoder_size=56", "--fold", "0", "--shot", "1", "5", "--seed", "1234", "--limit", "2"]
    assert main(run_args(synthetic_root, tmp_path / "uncached", *common, "--no-cache")) == 0
    assert main(run_args(synthetic_root, tmp_path / "cached", *common)) == 0
    uncached = records_of(tmp_path / "uncached")
    assert len(uncached) == 2 and records_of(tmp_path / "cached") == uncached
    infos = [json.loads(p.read_text()) for p in sorted((tmp_path / "cached" / "runs").rglob("run.json"))]
    assert {i["card"]["training"] for i in infos} == {"none"}
    # DINOv2 once per distinct image, SAM once per distinct query image (supports never need it).
    episodes = [json.loads(line) for i in infos for line in Path(i["episode_list_path"]).read_text().splitlines()[:2]]
    queries = {q for e in episodes for q in e["query"]}
    images = queries | {s for e in episodes for s in e["support"]}
    assert sum(i["encoder_passes"] for i in infos) == len(images)
    assert sum(i["query_encoder_passes"] for i in infos) == len(queries) < len(images)
    assert main(run_args(synthetic_root, tmp_path / "bad", "--method", "gf-sam", "--option", "backbone=smallcnn",
                         "--option", "sam=sam-tiny", "--fold", "0", "--shot", "1", "--limit", "1")) == 2
