"""Results you can trust: every way a run could be stale, mixed, truncated, blocked or aimed at the
wrong fold, each reproduced through the CLI and shown refused or repaired."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fsseg_bench.checkpoints import save_checkpoint
from fsseg_bench.cli import main
from fsseg_bench.data.png import write_mask_png
from fsseg_bench.data.voc import locate_voc
from fsseg_bench.episodes import EpisodeSpec, write_episode_list
from fsseg_bench.runner.store import LOCK, RunLocked, acquire_lock
from helpers import TINY_PROTOCOL as TINY

TINY_PROTOCOL = TINY.replace("seeds = [5]", "seeds = [5, 6]") + 'backbone = "smallcnn"\n'

EDITED_PLUGIN = '''
import torch
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method

FOREGROUND_BIAS = {bias}


@register_method("edited", description="a method the user keeps editing")
class Edited(Method):
    def predict(self, episode):
        query = episode.query_images
        scores = torch.zeros(query.shape[0], 2, *query.shape[-2:])
        scores[:, 1] = FOREGROUND_BIAS
        return scores
'''

FAULTS_PLUGIN = '''
import os
import sys
import time
import torch
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method


def background(episode):
    return torch.zeros(episode.query_images.shape[0], 2, *episode.query_images.shape[-2:])


@register_method("dies", description="its process dies")
class Dies(Method):
    def predict(self, episode):
        os._exit(3)


@register_method("exits", description="calls sys.exit")
class Exits(Method):
    def predict(self, episode):
        sys.exit(4)


@register_method("interrupts", description="raises KeyboardInterrupt")
class Interrupts(Method):
    def predict(self, episode):
        raise KeyboardInterrupt


@register_method("hangs", description="never returns")
class Hangs(Method):
    def predict(self, episode):
        time.sleep(3600)


@register_method("short-batch", description="batched prediction drops the last episode")
class ShortBatch(Method):
    frozen_encoder = True

    def encode(self, images):
        return images[:, :, ::4, ::4]

    def predict_from_features(self, episode, support_features, query_features):
        return background(episode)

    def predict_batch_from_features(self, episodes, support_features, query_features):
        return torch.stack([background(e) for e in episodes])[:-1]


@register_method("slow", description="15 ms an episode")
class Slow(Method):
    def predict(self, episode):
        time.sleep(0.015)
        return background(episode)
'''


@pytest.fixture
def tiny_protocol(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROTOCOL)
    return path


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "faults.py"
    path.write_text(FAULTS_PLUGIN)
    return path


def cli(capsys, *args):
    code = main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_run(capsys, tiny_voc, protocol, results, *extra):
    return cli(capsys, "run", "--protocol", protocol, "--data-root", tiny_voc, "--results", results, "--quiet",
               "--workers", "1", *extra)


def subprocess_run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fsseg_bench", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def run_folders(results: Path, method: str, protocol="tiny") -> list[Path]:
    return sorted((results / "runs" / protocol / method).iterdir())


def without_seconds(source) -> list[dict]:
    data = source.read_bytes() if isinstance(source, Path) else source
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in data.splitlines()]


def one_line_error(code, err, *fragments):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- identity: code and data ------------------------------------------------------------------

def test_editing_a_plugin_never_reuses_or_resumes_the_old_run(tiny_voc, tiny_protocol, tmp_path, capsys):
    plugin, results = tmp_path / "edited.py", tmp_path / "results"
    args = ["run", "--protocol", tiny_protocol, "--data-root", tiny_voc, "--results", results, "--quiet",
            "--method", "edited", "--plugin", plugin, "--seed", "5", "--workers", "1"]
    plugin.write_text(EDITED_PLUGIN.format(bias=1.0))
    assert subprocess_run(*args).returncode == 0
    plugin.write_text(EDITED_PLUGIN.format(bias=-1.0))  # the researcher edits the method
    again = subprocess_run(*args)
    assert again.returncode == 0 and "1 completed, 0 already complete" in again.stdout, again.stdout
    old, new = run_folders(results, "edited")
    records = {json.loads((d / "run.json").read_text())["code_sha256"]: pd.read_json(d / "records.jsonl", lines=True)
               for d in (old, new)}
    assert len(records) == 2  # two code fingerprints, two runs
    predicted = sorted(int(frame.pred_fg.sum()) for frame in records.values())
    assert predicted[0] == 0 and predicted[1] > 0  # all-background vs all-foreground: new code, new records
    code, out, _ = cli(capsys, "runs", "--results", results, "--plugin", plugin)
    stale = [line for line in out.splitlines() if "edited" in line]
    assert code == 0 and len(stale) == 2 and sum("code" in line.split("complete")[1] for line in stale) == 1, out


def test_a_changed_data_tree_makes_a_new_run_and_a_touched_one_does_not(tiny_voc, tiny_protocol, tmp_path, capsys):
    results = tmp_path / "results"
    args = ["--method", "support-copy", "--seed", "5"]
    assert tiny_run(capsys, tiny_voc, tiny_protocol, results, *args)[0] == 0
    tree = locate_voc(tiny_voc)
    os.utime(tree.mask_path("img_a"), (time.time() + 5, time.time() + 5))  # same bytes, new mtime
    code, out, _ = tiny_run(capsys, tiny_voc, tiny_protocol, results, *args)
    assert code == 0 and "1 already complete" in out and len(run_folders(results, "support-copy")) == 1
    mask = np.zeros((20, 24), dtype=np.uint8)
    mask[2:12, 2:12] = 1  # every image of class 1 is in some episode of this list
    mask[14:18, 12:18] = 2
    for image_id in ("img_a", "img_b", "img_d"):
        write_mask_png(tree.mask_path(image_id), mask)
    code, out, _ = tiny_run(capsys, tiny_voc, tiny_protocol, results, *args)
    assert code == 0 and "1 completed" in out, out
    folders = run_folders(results, "support-copy")
    assert len(folders) == 2
    data = {json.loads((d / "run.json").read_text())["data_sha256"] for d in folders}
    assert len(data) == 2
    code, out, _ = cli(capsys, "runs", "--results", results, "--protocol", tiny_protocol)
    rows = [line for line in out.splitlines() if line.startswith("tiny ")]
    assert len(rows) == 2 and sum("complete  6/6       data" in line for line in rows) == 1, out


# --- tables never merge configurations --------------------------------------------------------

def test_two_configurations_of_one_method_are_two_rows(synthetic_root, tmp_path, capsys):
    common = ["run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results", tmp_path, "--quiet",
              "--workers", "1", "--method", "knn", "--shot", "1", "--seed", "1234", "--limit", "4"]
    assert cli(capsys, *common, "--fold", "0", "--option", "k=1")[0] == 0
    assert cli(capsys, *common, "--fold", "1")[0] == 0
    assert cli(capsys, *common, "--fold", "2", "--label", "knn-mine")[0] == 0
    code, out, _ = cli(capsys, "table", "--results", tmp_path, "--format", "csv", "--resamples", "20")
    assert code == 0
    table = pd.read_csv(pd.io.common.StringIO(out))
    rows = table[table.metric == "miou"].groupby("method")["fold"].apply(lambda f: set(f.astype(str))).to_dict()
    assert rows == {"knn (k=1)": {"0"}, "knn (k=5)": {"1"}, "knn-mine": {"2"}}
    code, out, _ = cli(capsys, "table", "--results", tmp_path, "--resamples", "20")
    assert "| knn (k=1)† |" in out and "| knn (k=5)† |" in out


def test_one_cell_computed_on_two_data_versions_is_an_error_naming_both(tiny_voc, tiny_protocol, tmp_path, capsys):
    results = tmp_path / "results"
    assert tiny_run(capsys, tiny_voc, tiny_protocol, results, "--method", "support-copy", "--seed", "5")[0] == 0
    tree = locate_voc(tiny_voc)
    for path in tree.root.glob("SegmentationClassAug/*.png"):  # a void pixel in a corner of every mask
        from fsseg_bench.data.voc import read_mask
        mask = read_mask(path)
        mask[0, 0] = 255
        write_mask_png(path, mask)
    assert tiny_run(capsys, tiny_voc, tiny_protocol, results, "--method", "support-copy", "--seed", "5")[0] == 0
    first, second = run_folders(results, "support-copy")
    code, _, err = cli(capsys, "table", "--protocol", tiny_protocol, "--results", results)
    one_line_error(code, err, str(first), str(second), "differ in data")


# --- records are verified, not trusted --------------------------------------------------------

def test_damaged_records_are_reported_left_out_and_recomputed(synthetic_root, tmp_path, capsys):
    args = ["run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results", tmp_path, "--quiet",
            "--workers", "1", "--method", "support-copy", "--fold", "0", "--shot", "1", "--seed", "1234", "1235",
            "--limit", "6"]
    assert cli(capsys, *args)[0] == 0
    first, second = run_folders(tmp_path, "support-copy", "synthetic5i")
    pristine = (first / "records.jsonl").read_bytes()
    lines = pristine.splitlines(keepends=True)
    (first / "records.jsonl").write_bytes(b"".join(lines[:3]))  # truncated
    code, out, err = cli(capsys, "table", "--results", tmp_path, "--format", "csv", "--resamples", "20")
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert warning == [f"WARNING: {first / 'records.jsonl'}: damaged (3 records, expected 6); run left out "
                       f"(rerun the same `fsseg-bench run` command to recompute it)"]
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert set(table.n_episodes) == {6}  # only the intact run's episodes
    second_lines = (second / "records.jsonl").read_bytes().splitlines(keepends=True)
    second_lines[2] = b'{"index": 2, "class_id": 3, garbled\n'
    (second / "records.jsonl").write_bytes(b"".join(second_lines))
    for command in (["table"], ["compare", "support-copy", "support-copy"], ["plot", "episodes", "--out", tmp_path / "f"]):
        code, _, err = cli(capsys, *command, "--results", tmp_path)
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("fsseg-bench: error: no complete runs"), err
        assert f"{second / 'records.jsonl'}: damaged (line 3 is not valid JSON)" in err
    code, out, _ = cli(capsys, "runs", "--results", tmp_path)
    assert sum(line.startswith("synthetic5i ") and "damaged" in line for line in out.splitlines()) == 2, out
    code, out, _ = cli(capsys, *args)  # run re-verifies complete runs and recomputes the damaged ones
    assert code == 0 and "2 completed" in out, out
    assert without_seconds(first / "records.jsonl") == without_seconds(pristine)
    info = json.loads((second / "run.json").read_text())
    assert info["status"] == "complete" and info["repaired"][0]["at"] == 2
    assert info["repaired"][0]["problem"] == "line 3 is not valid JSON"


def test_a_batched_method_returning_too_few_results_fails_its_run(synthetic_root, tmp_path, capsys, faults):
    code, out, err = cli(capsys, "run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results",
                         tmp_path, "--quiet", "--workers", "1", "--method", "short-batch", "--fold", "0", "--shot",
                         "1", "--seed", "1234", "--limit", "6", "--plugin", faults)
    assert code == 1 and "1 failed" in out
    assert ("FAILED: short-batch fold 0 shot 1 seed 1234 episodes 0..5: the method returned 5 results for 6 "
            "episodes") in err
    (folder,) = run_folders(tmp_path, "short-batch", "synthetic5i")
    assert json.loads((folder / "run.json").read_text())["status"] == "running"


def test_a_complete_run_is_never_marked_so_with_missing_records(synthetic_root, tmp_path, capsys):
    args = ["run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results", tmp_path, "--quiet",
            "--workers", "1", "--method", "all-foreground", "--fold", "0", "--shot", "1", "--seed", "1234",
            "--limit", "5"]
    assert cli(capsys, *args)[0] == 0
    (folder,) = run_folders(tmp_path, "all-foreground", "synthetic5i")
    lines = (folder / "records.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "records.jsonl").write_bytes(lines[0] + lines[0] + b"".join(lines[2:]))  # a duplicated index
    code, out, _ = cli(capsys, *args)
    assert code == 0 and "1 completed" in out
    assert without_seconds(folder / "records.jsonl") == without_seconds(b"".join(lines))


# --- locks ------------------------------------------------------------------------------------

def test_an_empty_or_garbled_lock_file_blocks_nothing(tmp_path):
    for content in (b"", b"{not json", json.dumps({"pid": os.getpid(), "host": os.uname().nodename}).encode(),
                    json.dumps({"pid": 1, "host": os.uname().nodename}).encode()):
        (tmp_path / LOCK).write_bytes(content)
        lock = acquire_lock(tmp_path)  # a file nobody holds a lock on is free, whatever it says
        lock.release()


def test_a_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, signal, sys, time\n"
        f"fd = os.open({str(tmp_path / LOCK)!r}, os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'{\"pid\": 1, \"host\": \"container\"}')\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match="pid 1 on container"):
        acquire_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    acquire_lock(tmp_path).release()  # the kernel released it: pid 1, pid reuse or namespaces do not matter


def test_only_one_of_many_racing_processes_gets_a_stale_lock(tmp_path):
    for round_ in range(10):
        directory = tmp_path / f"round{round_}"
        directory.mkdir()
        (directory / LOCK).write_text(json.dumps({"pid": 2**22 + 7, "host": os.uname().nodename}))  # a dead holder
        barrier, winners, held = threading.Barrier(12), [], []

        def contend():
            barrier.wait()
            try:
                held.append(acquire_lock(directory))
                winners.append(1)
            except RunLocked:
                pass

        threads = [threading.Thread(target=contend) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        held[0].release()


# --- checkpoints are checked against the run ---------------------------------------------------

def write_checkpoint(path: Path, method="panet", fold=0, shot=1, provenance=True) -> Path:
    from fsseg_bench.registry import create_method

    model = create_method(method, backbone="smallcnn")
    if provenance:
        save_checkpoint(path, {"method": method, "config": model.config, "protocol": "synthetic5i",
                               "protocol_sha256": "0" * 64, "dataset": "synthetic5i", "fold": fold, "shot": shot,
                               "total_iterations": 1, "iteration": 1, "state_dict": model.state_dict()})
    else:
        torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)  # a paper's snapshot layout
    return path


def test_checkpoints_must_match_fold_shot_and_method(synthetic_root, tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "fold0-shot1.pt")
    capsys.readouterr()
    base = ["run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results", tmp_path / "r",
            "--quiet", "--workers", "1", "--seed", "1234", "--limit", "4"]
    code, _, err = cli(capsys, *base, "--method", "panet", "--checkpoint", f"panet={checkpoint}", "--fold", "1",
                       "--shot", "1")
    one_line_error(code, err, f"checkpoint {checkpoint} was trained on fold 0", "expected a fold-1 checkpoint")
    code, _, err = cli(capsys, *base, "--method", "panet-noalign", "--checkpoint", f"panet-noalign={checkpoint}",
                       "--fold", "0", "--shot", "1")
    one_line_error(code, err, "was trained for method 'panet', not 'panet-noalign'")
    code, _, err = cli(capsys, *base, "--method", "panet", "--checkpoint", f"panet={checkpoint}", "--fold", "0",
                       "--shot", "5")
    one_line_error(code, err, "was trained at 1 shot(s), this run is 5-shot", "--allow-other-shot")
    assert not (tmp_path / "r" / "runs").exists()  # nothing started
    code, _, err = cli(capsys, *base, "--method", "panet", "--checkpoint", f"panet={checkpoint}", "--fold", "0",
                       "--shot", "1", "5", "--allow-other-shot")
    assert code == 0, err
    infos = {json.loads(p.read_text())["shot"]: json.loads(p.read_text())
             for p in (tmp_path / "r").glob("runs/synthetic5i/panet/*/run.json")}
    assert infos[5]["checkpoint_other_shot"] is True and infos[1]["checkpoint_other_shot"] is False
    assert infos[5]["checkpoint_provenance"]["fold"] == 0 and infos[5]["checkpoint_provenance"]["kind"] == "fsseg-bench"
    code, out, _ = cli(capsys, "table", "--results", tmp_path / "r", "--resamples", "20")
    assert "| panet†§ |" in out and "§: some runs used a checkpoint trained at another shot" in out


def test_the_default_checkpoint_of_another_shot_needs_the_flag(synthetic_root, tmp_path, capsys):
    final = tmp_path / "checkpoints" / "synthetic5i" / "panet" / "fold0-shot1" / "final.pt"
    final.parent.mkdir(parents=True)
    write_checkpoint(final)
    capsys.readouterr()
    base = ["run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results", tmp_path, "--quiet",
            "--workers", "1", "--seed", "1234", "--limit", "3", "--method", "panet", "--fold", "0", "--shot", "5"]
    code, _, err = cli(capsys, *base)
    one_line_error(code, err, "no checkpoint for panet fold 0 shot 5 seed 1234", f"another shot exists: {final}")
    assert cli(capsys, *base, "--allow-other-shot")[0] == 0


def test_a_checkpoint_without_provenance_is_accepted_with_one_warning(synthetic_root, tmp_path, capsys):
    snapshot = write_checkpoint(tmp_path / "released.pth", provenance=False)
    capsys.readouterr()
    code, _, err = cli(capsys, "run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results",
                       tmp_path, "--quiet", "--workers", "1", "--seed", "1234", "1235", "--limit", "3", "--method",
                       "panet", "--checkpoint", f"panet={snapshot}", "--fold", "2", "--shot", "1")
    assert code == 0
    warnings = [line for line in err.splitlines() if "carries no provenance" in line]
    assert len(warnings) == 1 and str(snapshot.resolve()) in warnings[0]
    for path in tmp_path.glob("runs/synthetic5i/panet/*/run.json"):
        assert json.loads(path.read_text())["checkpoint_provenance"]["kind"] == "external"


# --- paths, lists and values ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "*", "synthetic5i/../x", "Upper"])
def test_protocol_names_are_safe_slugs(tiny_voc, tmp_path, capsys, name):
    path = tmp_path / "p.toml"
    path.write_text(TINY_PROTOCOL.replace('name = "tiny"', f'name = "{name}"'))
    code, _, err = tiny_run(capsys, tiny_voc, path, tmp_path / "results", "--method", "support-copy")
    one_line_error(code, err, f"key 'name' = '{name}': expected a slug")
    assert not any(tmp_path.rglob("run.json"))


def test_a_split_list_with_a_duplicated_id_is_refused(tiny_voc, tiny_protocol, tmp_path, capsys):
    split = locate_voc(tiny_voc).list_path("val")
    split.write_text(split.read_text() + "img_b\n")
    code, _, err = tiny_run(capsys, tiny_voc, tiny_protocol, tmp_path / "results", "--method", "support-copy")
    one_line_error(code, err, f"{split}:10: image id 'img_b' listed twice (first on line 2)")


@pytest.mark.parametrize("cli_args,fragment", [
    (["--limit", "0"], "--limit 0: expected an integer >= 1"),
    (["--limit", "-195"], "--limit -195: expected an integer >= 1"),
    (["--fold", "7"], "--fold 7: protocol 'tiny' has folds 0"),
    (["--shot", "0"], "--shot 0: expected an integer >= 1"),
    (["--seed", "-3"], "--seed -3: expected an integer >= 0"),
    (["--workers", "0"], "--workers 0: expected a number >= 1"),
    (["--cache-mib", "0"], "--cache-mib 0.0: expected a positive number"),
    (["--timeout-per-episode", "-1"], "--timeout-per-episode -1.0: expected a positive number"),
])
def test_bad_cli_values_are_one_line_before_any_work(tiny_voc, tiny_protocol, tmp_path, capsys, cli_args, fragment):
    code, _, err = tiny_run(capsys, tiny_voc, tiny_protocol, tmp_path / "results", "--method", "support-copy", *cli_args)
    one_line_error(code, err, fragment)
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize("change,fragment", [
    (("", "ignore_index = 300\n"), "key 'ignore_index' = 300: expected an integer in 0..255"),
    (("", "[training]\nlr = nan\n"), "key 'lr' = nan: expected a finite non-negative number"),
    (('backbone = "smallcnn"', 'backbone = "resnet9"'), "key 'backbone' = 'resnet9': expected one of"),
    (("", "description = 5\n"), "key 'description' = 5: expected a string"),
    (("", '[episode_sha256]\n"fold0-shot1" = "' + "a" * 64 + '"\n'), "key 'episode_sha256.fold0-shot1'"),
    (("", '[episode_sha256]\n"fold0-shot1-seed5" = "xyz"\n'), "expected 64 lowercase hex digits"),
])
def test_bad_protocol_values_are_one_line(tiny_voc, tmp_path, capsys, change, fragment):
    old, new = change
    text = TINY_PROTOCOL.replace(old, new) if old else TINY_PROTOCOL + new
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, _, err = tiny_run(capsys, tiny_voc, path, tmp_path / "results", "--method", "support-copy")
    one_line_error(code, err, fragment)


def test_a_missing_data_root_is_one_line_not_one_per_run(tmp_path, monkeypatch):
    monkeypatch.delenv("FSSEG_BENCH_DATA", raising=False)
    result = subprocess_run("run", "--protocol", "pascal5i-panet", "--method", "support-copy", "--results", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fsseg-bench: error: protocol 'pascal5i-panet' reads PASCAL VOC: pass --data-root DIR or set FSSEG_BENCH_DATA"]


@pytest.mark.parametrize("episodes,fragment", [
    ([EpisodeSpec(0, 1, ("img_a",), ("img_b",)), EpisodeSpec(0, 1, ("img_b",), ("img_e",))], "has index 0 (a duplicate)"),
    ([EpisodeSpec(0, 1, ("img_a",), ("img_b",)), EpisodeSpec(2, 1, ("img_b",), ("img_e",))], "has index 2 (out of order or with a gap)"),
    ([EpisodeSpec(0, 1, ("img_a",), ("img_a",))], "query 'img_a' is also one of its supports"),
    ([], "has no episodes"),
])
def test_bad_episode_lists_are_refused(tiny_voc, tiny_protocol, tmp_path, capsys, monkeypatch, episodes, fragment):
    listed = tmp_path / "lists" / "fold0-shot1-seed5.jsonl"
    write_episode_list(listed, episodes)
    code, _, err = tiny_run(capsys, tiny_voc, tiny_protocol, tmp_path / "results", "--method", "support-copy",
                            "--seed", "5", "--fold", "0", "--shot", "1", "--episode-list", listed)
    one_line_error(code, err, "fold0-shot1-seed5.jsonl", fragment)


# --- faults stay local ------------------------------------------------------------------------

def test_a_dying_worker_fails_only_its_runs(synthetic_root, tmp_path, capsys, faults):
    code, out, err = cli(capsys, "run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results",
                         tmp_path, "--quiet", "--workers", "2", "--method", "dies", "support-copy", "--fold", "0",
                         "--shot", "1", "--seed", "1234", "1235", "1236", "--limit", "3", "--plugin", faults)
    assert code == 1, err
    assert "6 runs: 3 completed" in out and "3 failed" in out
    failures = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 3 and all("the worker process died (exit code 3)" in line for line in failures), err
    assert {line.split(":")[1].strip() for line in failures} == {f"dies fold 0 shot 1 seed {s}" for s in (1234, 1235, 1236)}


@pytest.mark.parametrize("method,message", [("exits", "the method raised SystemExit(4)"),
                                            ("interrupts", "the method raised KeyboardInterrupt()")])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_system_exit_and_keyboard_interrupt_in_a_method_fail_its_run(synthetic_root, tmp_path, capsys, faults,
                                                                      method, message, workers):
    code, out, err = cli(capsys, "run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results",
                         tmp_path, "--quiet", "--workers", workers, "--method", method, "support-copy", "--fold", "0",
                         "--shot", "1", "--seed", "1234", "--limit", "3", "--plugin", faults)
    assert code == 1 and "1 completed" in out and "1 failed" in out
    assert [line for line in err.splitlines() if line.startswith("FAILED")] == [
        f"FAILED: {method} fold 0 shot 1 seed 1234: {message}"]


def test_a_hanging_method_times_out(synthetic_root, tmp_path, capsys, faults):
    began = time.monotonic()
    code, out, err = cli(capsys, "run", "--protocol", "synthetic5i", "--data-root", synthetic_root, "--results",
                         tmp_path, "--quiet", "--workers", "1", "--method", "hangs", "support-copy", "--fold", "0",
                         "--shot", "1", "--seed", "1234", "--limit", "2", "--plugin", faults,
                         "--timeout-per-episode", "1")
    assert code == 1 and "1 completed" in out and time.monotonic() - began < 60
    assert ("FAILED: hangs fold 0 shot 1 seed 1234: timed out: no episode finished within --timeout-per-episode 1 s"
            in err)


def test_ctrl_c_stops_the_command_cleanly_with_a_summary(synthetic_root, tmp_path, faults):
    process = subprocess.Popen([sys.executable, "-m", "fsseg_bench", "run", "--protocol", "synthetic5i",
                                "--data-root", str(synthetic_root), "--results", str(tmp_path), "--quiet",
                                "--workers", "1", "--method", "slow", "--fold", "0", "--shot", "1", "--seed", "1234",
                                "1235", "--plugin", str(faults)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(
            len(p.read_bytes().splitlines()) >= 16 for p in tmp_path.glob("runs/*/*/*/records.jsonl")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "2 runs: 0 completed" in err and "2 interrupted or not started" in err and "Traceback" not in err
    assert "rerun the same command to resume" in err
    code = main(["run", "--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(tmp_path),
                 "--quiet", "--workers", "1", "--method", "slow", "--fold", "0", "--shot", "1", "--seed", "1234",
                 "1235", "--plugin", str(faults)])
    assert code == 0
    resumed = [json.loads(p.read_text())["resumed_at"] for p in tmp_path.glob("runs/*/slow/*/run.json")]
    assert sorted(len(r) for r in resumed) == [0, 1] and max(map(sum, resumed)) >= 16  # the interrupted run resumed


def test_a_corrupt_mask_is_found_before_any_run(tiny_voc, tiny_protocol, tmp_path, capsys):
    path = locate_voc(tiny_voc).mask_path("img_d")
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = tiny_run(capsys, tiny_voc, tiny_protocol, tmp_path / "results", "--method", "support-copy")
    one_line_error(code, err, f"{path}: unreadable or corrupt PNG")
    assert not (tmp_path / "results" / "runs").exists()


def test_a_corrupt_image_body_fails_each_run_once_with_exit_2(tiny_voc, tiny_protocol, tmp_path, capsys):
    tree = locate_voc(tiny_voc)
    for image_id in ("img_a", "img_b", "img_e"):  # every image of class 1: some episode reads one
        path = tree.image_path(image_id)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) * 3 // 4])  # the header still parses; the pixels do not
    code, out, err = tiny_run(capsys, tiny_voc, tiny_protocol, tmp_path / "results", "--method", "support-copy")
    failures = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert code == 2 and "Traceback" not in err
    assert len(failures) == 2 and len(err.strip().splitlines()) == 2, err  # one line per run, printed once
    assert all("unreadable or corrupt image" in line for line in failures)


def test_force_recomputes_and_runs_shows_every_state(tiny_voc, tiny_protocol, tmp_path, capsys):
    results = tmp_path / "results"
    args = ["--method", "support-copy", "--seed", "5", "6"]
    assert tiny_run(capsys, tiny_voc, tiny_protocol, results, *args)[0] == 0
    first, second = run_folders(results, "support-copy")
    before = without_seconds(first / "records.jsonl")
    code, out, _ = tiny_run(capsys, tiny_voc, tiny_protocol, results, *args, "--force")
    assert code == 0 and "2 completed, 0 already complete" in out
    assert without_seconds(first / "records.jsonl") == before
    assert json.loads((first / "run.json").read_text())["forced"] is True
    info = json.loads((second / "run.json").read_text())
    info["status"] = "running"  # as a crashed run leaves it
    (second / "run.json").write_text(json.dumps(info))
    held = acquire_lock(first)
    try:
        code, out, _ = cli(capsys, "runs", "--results", results)
    finally:
        held.release()
    states = {line.split()[-1]: line for line in out.splitlines() if line.startswith("tiny ")}
    assert f"running (locked by pid {os.getpid()} on" in states[first.name]
    assert " incomplete " in states[second.name] and "6/6" in states[second.name]
    assert out.strip().splitlines()[-1] == "2 runs: 1 incomplete, 1 running; 0 stale for the current code or data"
