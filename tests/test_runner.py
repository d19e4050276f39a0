"""The runner: records, run identity, resume after SIGKILL, locks, cache, determinism, executors, failures."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fsseg_bench.cli import main
from fsseg_bench.metrics import COUNT_COLUMNS
from fsseg_bench.runner.store import LOCK, acquire_lock, read_records
from helpers import run_args, write_plugin

PLUGIN = '''
import time
import torch
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method


def colour_scores(episode):
    pixels = episode.support_images.permute(1, 0, 2, 3).flatten(1)
    labels = episode.support_masks.flatten()
    means = [pixels[:, labels == v].mean(dim=1) for v in (0, 1)]
    return -torch.stack([((episode.query_images - m[None, :, None, None]) ** 2).sum(1) for m in means], 1)


@register_method("slow-colour", description="mean colour matching, 30 ms per episode")
class SlowColour(Method):
    def predict(self, episode):
        time.sleep(0.03)
        return colour_scores(episode)


@register_method("raises", description="fails at episode 3")
class Raises(Method):
    calls = 0

    def predict(self, episode):
        Raises.calls += 1
        if Raises.calls == 4:
            raise RuntimeError("boom")
        return colour_scores(episode)


@register_method("wrong-shape", description="three channels")
class WrongShape(Method):
    def predict(self, episode):
        return torch.zeros(1, 3, *episode.image_size)


@register_method("nan-scores", description="NaN")
class NanScores(Method):
    def predict(self, episode):
        return torch.full((1, 2, *episode.image_size), float("nan"))
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return write_plugin(tmp_path_factory, "test_methods.py", PLUGIN)


def load_runs(results: Path) -> dict[str, pd.DataFrame]:
    """{run folder name: records without the timing column}."""
    runs = {}
    for records in sorted(results.glob("runs/*/*/*/records.jsonl")):
        frame = pd.read_json(records, lines=True)
        runs[f"{records.parent.parent.name}/{records.parent.name}"] = frame.drop(columns=["seconds"])
    return runs


def assert_same_runs(a: Path, b: Path):
    runs_a, runs_b = load_runs(a), load_runs(b)
    assert runs_a.keys() == runs_b.keys() and runs_a
    for key in runs_a:
        pd.testing.assert_frame_equal(runs_a[key], runs_b[key])


def test_records_and_run_json(synthetic_root, tmp_path):
    assert main(run_args(synthetic_root, tmp_path, "--method", "knn", "--fold", "0", "--shot", "1",
                         "--seed", "1234", "--limit", "12", "--workers", "1", "--save-predictions", "3")) == 0
    (directory,) = list(tmp_path.glob("runs/synthetic5i/knn/*"))
    frame = pd.read_json(directory / "records.jsonl", lines=True)
    assert list(frame.columns) == ["index", "class_id", "query", "support", *COUNT_COLUMNS, "seconds"]
    assert list(frame["index"]) == list(range(12))
    assert (frame.fg_union >= frame.fg_intersection).all() and (frame.true_fg > 0).all()
    assert (frame.fg_union == frame.pred_fg + frame.true_fg - frame.fg_intersection).all()
    episodes = [json.loads(line) for line in
                Path("protocols/episodes/synthetic5i/fold0-shot1-seed1234.jsonl").read_text().splitlines()[:12]]
    assert list(frame["query"]) == [e["query"] for e in episodes]
    info = json.loads((directory / "run.json").read_text())
    for key in ("harness_version", "python", "torch", "timm", "git"):
        assert key in info["software"]
    assert info["status"] == "complete" and info["limit"] == 12 and info["n_episodes"] == 12
    assert info["pretrained"] is True and info["method"] == "knn" and info["method_config"]["backbone"] == "smallcnn"
    assert info["weights_sha256"] == [["weights", __import__("fsseg_bench.pretrain", fromlist=["x"]).STANDIN_WEIGHTS[
        "smallcnn"][1]]]
    assert info["episode_list_sha256"] == "%s" % __import__("fsseg_bench.protocol", fromlist=["x"]).load_protocol(
        "synthetic5i").pinned_sha256(0, 1, 1234)
    assert directory.name.startswith("fold0-shot1-seed1234-") and directory.name.endswith(info["run_id"])
    assert sorted(p.name for p in (directory / "predictions").iterdir()) == ["00000.png", "00006.png", "00011.png"]
    # Same command: same folder, nothing rerun. Another limit: another folder.
    assert main(run_args(synthetic_root, tmp_path, "--method", "knn", "--fold", "0", "--shot", "1",
                         "--seed", "1234", "--limit", "12", "--workers", "1")) == 0
    assert len(list(tmp_path.glob("runs/synthetic5i/knn/*"))) == 1
    assert main(run_args(synthetic_root, tmp_path, "--method", "knn", "--fold", "0", "--shot", "1",
                         "--seed", "1234", "--limit", "10", "--workers", "1")) == 0
    assert len(list(tmp_path.glob("runs/synthetic5i/knn/*"))) == 2


def test_resume_after_sigkill_matches_uninterrupted(synthetic_root, tmp_path, plugin):
    args = run_args(synthetic_root, tmp_path / "killed", "--method", "slow-colour", "--fold", "1", "--shot", "1",
                    "--seed", "1234", "--limit", "120", "--workers", "1", "--plugin", str(plugin))
    process = subprocess.Popen([sys.executable, "-m", "fsseg_bench", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    records = None
    while time.time() < deadline:
        found = list((tmp_path / "killed").glob("runs/*/*/*/records.jsonl"))
        if found and len(found[0].read_bytes().splitlines()) >= 40:
            records = found[0]
            break
        time.sleep(0.05)
    assert records is not None, "the run never got going"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(read_records(records.parent))
    assert 40 <= written < 120
    assert (records.parent / LOCK).exists(), "a killed process leaves its lock behind"
    # Simulate a torn final write as well: half a JSON line.
    with open(records, "a") as handle:
        handle.write('{"index": %d, "class_id": 7, "qu' % written)
    assert main(args) == 0  # the stale lock is taken over, the torn line dropped
    assert main(run_args(synthetic_root, tmp_path / "straight", "--method", "slow-colour", "--fold", "1", "--shot", "1",
                         "--seed", "1234", "--limit", "120", "--workers", "1", "--plugin", str(plugin))) == 0
    assert_same_runs(tmp_path / "killed", tmp_path / "straight")
    info = json.loads((records.parent / "run.json").read_text())
    assert info["resumed_at"] == [written]


def test_concurrent_processes_never_write_the_same_run(synthetic_root, tmp_path, plugin):
    args = run_args(synthetic_root, tmp_path / "shared", "--method", "slow-colour", "--fold", "2", "--shot", "1",
                    "--seed", "1234", "1235", "--limit", "40", "--workers", "1", "--plugin", str(plugin))
    first = subprocess.Popen([sys.executable, "-m", "fsseg_bench", *args], stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen([sys.executable, "-m", "fsseg_bench", *args], stdout=subprocess.PIPE, text=True)
    outputs = [first.communicate()[0], second.communicate()[0]]
    assert first.returncode == 0 and second.returncode == 0
    assert main(args) == 0  # finishes whatever a skipping process left
    runs = load_runs(tmp_path / "shared")
    assert len(runs) == 2 and all(list(frame["index"]) == list(range(40)) for frame in runs.values())
    assert main(run_args(synthetic_root, tmp_path / "alone", "--method", "slow-colour", "--fold", "2", "--shot", "1",
                         "--seed", "1234", "1235", "--limit", "40", "--workers", "1", "--plugin", str(plugin))) == 0
    assert_same_runs(tmp_path / "shared", tmp_path / "alone")
    # Between them the two processes completed each run once (the other skipped or found it complete).
    completed = sum(int(out.split(" runs: ")[1].split(" completed")[0]) for out in outputs)
    assert completed <= 2, outputs


def test_a_run_locked_by_a_live_process_is_skipped_untouched(synthetic_root, tmp_path, capsys):
    args = run_args(synthetic_root, tmp_path, "--method", "support-copy", "--fold", "0", "--shot", "1",
                    "--seed", "1234", "--limit", "5", "--workers", "1")
    assert main(args) == 0
    (directory,) = list(tmp_path.glob("runs/synthetic5i/support-copy/*"))
    (directory / "run.json").unlink()
    before = (directory / "records.jsonl").read_bytes()
    held = acquire_lock(directory)  # a separate open file description: it conflicts like another process
    try:
        capsys.readouterr()
        assert main(args) == 0
        out = capsys.readouterr()
    finally:
        held.release()
    assert "1 skipped (being written by another process)" in out.out
    assert f"support-copy fold 0 shot 1 seed 1234: being written by pid {os.getpid()} on" in out.err
    assert (directory / "records.jsonl").read_bytes() == before and not (directory / "run.json").exists()


def test_lock_held_by_live_process_is_respected(tmp_path):
    from fsseg_bench.runner.store import RunLocked
    lock = acquire_lock(tmp_path)
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        acquire_lock(tmp_path)
    lock.release()
    acquire_lock(tmp_path).release()  # released: free again


def test_cache_on_and_off_agree_and_runs_are_deterministic(synthetic_root, tmp_path):
    common = ["--method", "panet-init", "knn", "linear-probe", "--fold", "3", "--shot", "1", "5", "--seed", "1236",
              "--limit", "15", "--workers", "1"]
    assert main(run_args(synthetic_root, tmp_path / "cached", *common)) == 0
    assert main(run_args(synthetic_root, tmp_path / "uncached", *common, "--no-cache")) == 0
    assert main(run_args(synthetic_root, tmp_path / "again", *common)) == 0
    assert_same_runs(tmp_path / "cached", tmp_path / "uncached")
    assert_same_runs(tmp_path / "cached", tmp_path / "again")
    for a, b in zip(sorted((tmp_path / "cached").glob("runs/*/*/*/records.jsonl")),
                    sorted((tmp_path / "again").glob("runs/*/*/*/records.jsonl"))):
        strip = lambda path: [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in path.read_text().splitlines()]
        assert json.dumps(strip(a)) == json.dumps(strip(b))


def test_process_pool_and_dask_match_in_process(synthetic_root, tmp_path):
    pytest.importorskip("dask.distributed")
    common = ["--method", "knn", "support-copy", "--fold", "0", "--shot", "1", "--seed", "1234", "1235", "--limit", "10"]
    assert main(run_args(synthetic_root, tmp_path / "inproc", *common, "--workers", "1")) == 0
    assert main(run_args(synthetic_root, tmp_path / "pool", *common, "--workers", "2")) == 0
    assert main(run_args(synthetic_root, tmp_path / "dask", *common, "--executor", "dask", "--scheduler", "local",
                         "--workers", "2")) == 0
    assert_same_runs(tmp_path / "inproc", tmp_path / "pool")
    assert_same_runs(tmp_path / "inproc", tmp_path / "dask")


@pytest.mark.parametrize("method,message", [
    ("raises", "raises fold 0 shot 1 seed 1234: RuntimeError: boom"),
    ("wrong-shape", "wrong-shape fold 0 shot 1 seed 1234 episode 0: predict returned shape (1, 3, 64, 64), expected (1, 2, 64, 64)"),
    ("nan-scores", "nan-scores fold 0 shot 1 seed 1234 episode 0: predict returned NaN or infinite scores"),
])
def test_a_failing_method_fails_its_run_and_others_go_on(synthetic_root, tmp_path, plugin, capsys, method, message):
    code = main(run_args(synthetic_root, tmp_path, "--method", method, "support-copy", "--fold", "0", "--shot", "1",
                         "--seed", "1234", "--limit", "6", "--workers", "1", "--plugin", str(plugin)))
    captured = capsys.readouterr()
    assert code == 1
    failures = [line for line in captured.err.splitlines() if line.startswith("FAILED:")]
    assert failures and all(line == f"FAILED: {message}" for line in failures), captured.err
    assert "1 completed" in captured.out and "1 failed" in captured.out
    (good,) = list(tmp_path.glob("runs/synthetic5i/support-copy/*"))
    assert json.loads((good / "run.json").read_text())["status"] == "complete"


def test_missing_checkpoint_for_a_trainable_method(synthetic_root, tmp_path, capsys):
    code = main(run_args(synthetic_root, tmp_path, "--method", "panet", "--fold", "0", "--shot", "1",
                         "--seed", "1234", "--limit", "3", "--workers", "1"))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1  # found before any work starts
    assert err.startswith("fsseg-bench: error: no checkpoint for panet fold 0 shot 1 seed 1234: run `fsseg-bench train")


def test_bench_reports_every_measure(tmp_path):
    from fsseg_bench.runner.bench import BenchSettings, bench

    settings = BenchSettings("tiny", 40, 60, 80, 32, 24, (1, 2), 3)
    report = bench(method="panet-init", backbone="smallcnn", settings=settings, keep=tmp_path)
    assert report.runs == 4 and report.episodes_per_shot == 48
    # Each distinct image of the whole matrix (both shots, both seeds) was encoded exactly once.
    lists = list(tmp_path.glob("results/episodes/bench-tiny/*.jsonl"))
    ids = {i for path in lists for line in path.read_text().splitlines()
           for key in ("query", "support") for i in json.loads(line)[key]}
    assert len(lists) == 4 and report.distinct_images == len(ids) == report.encoder_passes
    assert report.uncached_identical
    assert report.max_count_difference <= 2  # the literal loop computes the same, up to float rounding
    assert set(report.reference_seconds_per_episode) == {1, 5} and report.floor_seconds > 0
    assert 0 < report.rss_quarter_mib <= report.peak_rss_mib
    table = report.table()
    for row in ("reference loop, 5-shot", "floor: each distinct image", "full matrix / floor", "encoder passes",
                "largest count difference", "peak RSS"):
        assert row in table


def test_bench_leaves_no_scratch_behind(monkeypatch, tmp_path):
    from fsseg_bench.runner.bench import BenchSettings, bench

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    bench(backbone="smallcnn", settings=BenchSettings("tiny", 40, 60, 80, 32, 4, (1,), 1))
    assert list(tmp_path.iterdir()) == []


def test_cost_counts_the_per_episode_loop_against_encode_once(synthetic_root, capsys):
    """`fsseg-bench cost`: the --no-cache runner encodes every image of every episode (shots + 1 per
    episode), the encode-once runner each distinct image once, and their records agree."""
    from fsseg_bench.runner.matrix_cost import measure_cost

    report = measure_cost("synthetic5i", "panet-init", synthetic_root, options={"backbone": "smallcnn"}, folds=[0],
                          shots=[1, 5], limit=3)
    assert report.runs == 10 and report.episodes == 30  # 2 shots x 5 seeds, 3 episodes each
    assert report.uncached.encoder_passes == 5 * 3 * (1 + 1) + 5 * 3 * (5 + 1) == 120
    assert report.cached.encoder_passes == report.distinct_images < 120
    assert (report.gfsam_loop_sam_passes, report.gfsam_loop_dino_passes) == (30, 120)
    assert report.records_identical
    assert "identical bit for bit: yes" in report.table()
    assert main(["cost", "--protocol", "synthetic5i", "--method", "all-foreground"]) == 2
    assert "has no frozen encoder" in capsys.readouterr().err
