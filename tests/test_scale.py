"""Speed at real scale: each distinct image encoded once across a whole multi-run plan, bounded
caches that never change a record, and resume in the middle of a multi-run plan."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fsseg_bench.cli import main
from fsseg_bench.lru import LRUCache
from fsseg_bench.runner.feature_store import FeatureStore
from fsseg_bench.runner.features import FeatureCache
from helpers import records_of, run_args as helpers_run_args, write_plugin

PLUGIN = '''
import time
import torch
import torch.nn.functional as F
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method


@register_method("slow-prototype", description="mean-colour prototypes, 10 ms an episode")
class SlowPrototype(Method):
    frozen_encoder = True
    support_statistics = True

    def encode(self, images):
        return F.avg_pool2d(images, 4)

    def support_statistic(self, features, mask):
        weights = F.interpolate(torch.stack([mask == 0, mask == 1])[None].float(), size=features.shape[-2:])[0]
        return torch.einsum("chw,khw->kc", features[0], weights) / (weights.sum(dim=(1, 2))[:, None] + 1e-5)

    def predict_from_statistics(self, episodes, statistics, query_features):
        time.sleep(0.01 * len(episodes))
        prototypes = statistics.mean(dim=1)  # [B, 2, C]
        scores = -((query_features[:, :, None] - prototypes[:, None, :, :, None, None]) ** 2).sum(dim=3)
        return F.interpolate(scores.flatten(0, 1), size=episodes[0].image_size, mode="bilinear").view(
            *scores.shape[:3], *episodes[0].image_size)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return write_plugin(tmp_path_factory, "slow_prototype.py", PLUGIN)


def run_args(root, results, *extra):
    return helpers_run_args(root, results, "--workers", "1", *extra)


def run_infos(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/*/*/run.json"))]


def distinct_images(results: Path) -> set[str]:
    return {i for rows in records_of(results).values() for r in rows for i in r["query"] + r["support"]}


@pytest.mark.parametrize("method", ["panet-init", "knn"])
def test_each_distinct_image_is_encoded_once_across_seeds_and_shots(synthetic_root, tmp_path, method):
    args = run_args(synthetic_root, tmp_path, "--method", method, "--fold", "1", "--shot", "1", "5",
                    "--seed", "1234", "1235", "1236", "--limit", "30")
    assert main(args) == 0
    infos = run_infos(tmp_path)
    assert len(infos) == 6
    images = distinct_images(tmp_path)
    # 6 runs x 30 episodes name 360 query and 540 support slots; each distinct image costs one pass.
    assert sum(i["encoder_passes"] for i in infos) == len(images) < 180
    assert all(i["feature_store"] == str((tmp_path / "cache" / "features").resolve()) for i in infos)
    # Another command (a fresh process state) finds every feature in the disk store: no pass at all.
    before = records_of(tmp_path)
    from fsseg_bench.runner.execute import _FEATURE_CACHES
    _FEATURE_CACHES.clear()
    assert main(args + ["--force"]) == 0
    assert sum(i["encoder_passes"] for i in run_infos(tmp_path)) == 0
    assert records_of(tmp_path) == before


def test_caps_smaller_than_the_pool_give_identical_records(synthetic_root, tmp_path):
    common = ["--method", "panet-init", "knn", "--fold", "2", "--shot", "1", "5", "--seed", "1234", "1237",
              "--limit", "25"]
    assert main(run_args(synthetic_root, tmp_path / "uncached", *common, "--no-cache")) == 0
    # A memory tier of ~3 feature maps, a disk store of ~20 and a statistics cache of ~100 entries.
    assert main(run_args(synthetic_root, tmp_path / "tiny", *common, "--cache-mib", "0.4", "--feature-store-gib",
                         str(20 * 131200 / 2**30), "--statistics-mib", "0.4")) == 0
    assert main(run_args(synthetic_root, tmp_path / "default", *common)) == 0
    uncached = records_of(tmp_path / "uncached")
    assert len(uncached) == 8
    assert records_of(tmp_path / "tiny") == uncached == records_of(tmp_path / "default")
    store = sum(p.stat().st_size for p in (tmp_path / "tiny" / "cache" / "features").rglob("*.fsf"))
    assert store <= 20 * 131200  # the cap held
    tiny_passes = sum(i["encoder_passes"] for i in run_infos(tmp_path / "tiny"))
    default_passes = sum(i["encoder_passes"] for i in run_infos(tmp_path / "default"))
    # Two encoders (panet-init, knn), each encoding every distinct image once; the tiny caps re-encode.
    assert default_passes == 2 * len(distinct_images(tmp_path / "default"))
    assert tiny_passes > default_passes


def test_sigkill_in_the_middle_of_a_multi_run_plan_resumes_identically(synthetic_root, tmp_path, plugin):
    args = run_args(synthetic_root, tmp_path / "killed", "--method", "slow-prototype", "--fold", "3", "--shot", "1",
                    "5", "--seed", "1234", "1235", "--limit", "60", "--plugin", str(plugin))
    process = subprocess.Popen([sys.executable, "-m", "fsseg_bench", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline, killed_at = time.time() + 120, None
    while time.time() < deadline:
        infos = run_infos(tmp_path / "killed")
        complete = sum(i["status"] == "complete" for i in infos)
        running = [p for p in (tmp_path / "killed").glob("runs/*/*/*/records.jsonl")
                   if json.loads((p.parent / "run.json").read_text())["status"] == "running"
                   and len(p.read_bytes().splitlines()) >= 16]
        if complete >= 1 and running:
            killed_at = complete
            break
        time.sleep(0.02)
    assert killed_at is not None, "the plan never reached its second run"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 1 <= killed_at < 4
    assert main(args) == 0  # resumes the torn run, runs the rest
    assert main(run_args(synthetic_root, tmp_path / "straight", "--method", "slow-prototype", "--fold", "3", "--shot",
                         "1", "5", "--seed", "1234", "1235", "--limit", "60", "--plugin", str(plugin))) == 0
    killed, straight = records_of(tmp_path / "killed"), records_of(tmp_path / "straight")
    assert len(killed) == 4 and killed == straight
    assert any(info["resumed_at"] for info in run_infos(tmp_path / "killed"))


def test_statistics_are_never_evicted_by_feature_maps():
    cache = FeatureCache(cache_mib=1.0, statistics_mib=1.0)
    key = ("encoder",)
    cache.statistic(("stat", "a"), lambda: torch.zeros(2, 512))
    for i in range(50):  # 50 maps of 0.5 MiB through a 1 MiB feature tier
        cache.features(key, f"image{i}", lambda: torch.zeros(128, 32, 32))
    computed = []
    cache.statistic(("stat", "a"), lambda: computed.append(1) or torch.zeros(2, 512))
    assert computed == [] and cache.encoder_passes == 50


def test_the_feature_store_is_lossless_atomic_and_capped(tmp_path):
    entry = 64 * 1024 + 128  # a 64 KiB float32 tensor plus the .npy header
    store = FeatureStore(tmp_path, cap_bytes=5 * entry)
    values = {f"{i:064x}": torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(8)}
    for sha, value in values.items():
        store.put(("enc",), sha, value)
        time.sleep(0.01)  # distinct file times: least recently used is well defined
    kept = {sha for sha in values if store.get(("enc",), sha) is not None}
    assert len(kept) <= 5 and f"{7:064x}" in kept and f"{0:064x}" not in kept
    for sha in kept:
        assert torch.equal(store.get(("enc",), sha), values[sha])  # bitwise
    assert not list(tmp_path.rglob(".*tmp*"))
    assert FeatureStore(tmp_path, 5 * entry).bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.fsf"))
    assert store.get(("other encoder",), f"{7:064x}") is None


def test_lru_never_keeps_more_than_its_cap():
    lru = LRUCache(1000)
    for i in range(20):
        lru.get_or_compute(i, lambda: torch.zeros(100, dtype=torch.uint8))
    assert lru.bytes <= 1000 and len(lru) == 10 and 19 in lru and 9 not in lru


def test_batched_encoding_encodes_each_missing_image_once(synthetic_root, tmp_path):
    # The accelerator path, exercised on the CPU: images a run needs are encoded 4 at a time, first.
    assert main(run_args(synthetic_root, tmp_path, "--method", "panet-init", "--fold", "0", "--shot", "1", "5",
                         "--seed", "1234", "--limit", "12", "--encode-batch", "4")) == 0
    infos = run_infos(tmp_path)
    assert all(info["encode_batch"] == 4 and info["status"] == "complete" for info in infos)
    assert sum(info["encoder_passes"] for info in infos) == len(distinct_images(tmp_path))
