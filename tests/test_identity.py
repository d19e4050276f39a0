"""Identity by content, verified on reuse: each way a stale or mixed number reached a table while the
run said `complete`, reproduced through the CLI or the API, and shown fixed."""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fsseg_bench.cli import main
from fsseg_bench.data.png import write_mask_png
from fsseg_bench.data.voc import locate_voc
from fsseg_bench.runner.execute import _FEATURE_CACHES
from helpers import TINY_PROTOCOL as TINY

REPO = Path(__file__).resolve().parents[1]
# A fold-0 protocol over the tiny tree with a frozen-encoder backbone small enough for tests.
PROTOCOL = TINY.replace("seeds = [5]", "seeds = [5]") + 'backbone = "smallcnn"\n'


def cli(capsys, *args):
    code = main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subprocess_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "fsseg_bench", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def records_of(folder: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (folder / "records.jsonl").read_text().splitlines()]


def run_folders(results: Path, method: str, protocol: str = "tiny") -> list[Path]:
    root = results / "runs" / protocol / method
    return sorted(root.iterdir()) if root.is_dir() else []


def one_line_error(code, err, *fragments):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def protocol_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(PROTOCOL)
    return path


def run_args(tiny_voc, protocol, results, *extra):
    return ["run", "--protocol", protocol, "--data-root", tiny_voc, "--results", results, "--quiet", "--workers", "1",
            "--fold", "0", "--shot", "1", "--seed", "5", *extra]


# --- 1. the feature store verifies what it serves ------------------------------------------------

def _entries(store: Path) -> list[Path]:
    return sorted(store.glob("*/*.fsf"))


def _damage(kind: str, entries: list[Path]) -> None:
    from fsseg_bench.runner.feature_store import decode_entry, encode_entry

    target, other = entries[0], entries[1]
    if kind == "swapped":  # another image's entry copied over this one
        shutil.copyfile(other, target)
    elif kind == "bit-flip":
        blob = bytearray(target.read_bytes())
        blob[-5] ^= 0x10
        target.write_bytes(bytes(blob))
    elif kind == "zero-bytes":
        target.write_bytes(b"")
    elif kind == "directory":
        target.unlink()
        target.mkdir()
        (target / "x").write_text("x")
    else:  # a well-formed entry (key and checksum right) holding a wrong shape or a NaN
        key = f"{target.parent.name}/{target.stem}"
        array = decode_entry(bytearray(target.read_bytes()), key).copy()
        array = array[:, :, :-1] if kind == "wrong-shape" else np.where(np.arange(array.size).reshape(array.shape) == 3,
                                                                         np.nan, array).astype(array.dtype)
        target.write_bytes(encode_entry(key, np.ascontiguousarray(array)))


@pytest.mark.parametrize("kind", ["swapped", "bit-flip", "zero-bytes", "directory", "wrong-shape", "nan"])
def test_a_damaged_feature_store_entry_is_recomputed_never_served(kind, tiny_voc, protocol_file, tmp_path, capsys):
    results, store = tmp_path / "results", tmp_path / "store"
    common = run_args(tiny_voc, protocol_file, results, "--method", "knn", "--feature-store", store)
    assert cli(capsys, *common)[0] == 0
    (folder,) = run_folders(results, "knn")
    genuine = records_of(folder)
    assert len(_entries(store)) >= 2
    _damage(kind, _entries(store))
    _FEATURE_CACHES.clear()  # what a new process sees: the disk store only
    code, out, err = cli(capsys, *common, "--force")
    assert code == 0, err
    assert records_of(folder) == genuine  # the damaged entry was never used
    assert "1 feature-store entry was damaged and recomputed" in err, err
    _FEATURE_CACHES.clear()
    code, out, err = cli(capsys, *common, "--force")  # repaired: nothing damaged any more
    assert code == 0 and "damaged" not in err and records_of(folder) == genuine


# --- 2. code the plugin reaches beyond its own file ----------------------------------------------

PLUGIN = '''
import os
import torch
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method
from reachpkg.sub import threshold
from constants import OFFSET


@register_method("reach", description="reads a helper package, a constant module, a lazy module and $REACH_BIAS")
class Reach(Method):
    environment = ("REACH_BIAS",)

    def predict(self, episode):
        from lazyhelper import scale  # imported only when predicting
        support = (episode.support_masks == 1).float().mean(dim=0)
        bias = float(os.environ.get("REACH_BIAS", "0"))
        score = support * scale() + threshold() + OFFSET + bias
        return torch.stack([torch.full_like(score, 0.5), score])[None].expand(episode.query_images.shape[0], -1, -1, -1)
'''


def _write_reach_plugin(folder: Path) -> Path:
    (folder / "reachpkg").mkdir(parents=True)
    (folder / "reachpkg" / "__init__.py").write_text("")
    (folder / "reachpkg" / "sub.py").write_text("def threshold():\n    return 0.0\n")
    (folder / "constants.py").write_text("OFFSET = 0.0\n")
    (folder / "lazyhelper.py").write_text("def scale():\n    return 1.0\n")
    (folder / "reach.py").write_text(PLUGIN)
    return folder / "reach.py"


@pytest.mark.parametrize("edit", ["reachpkg/sub.py", "constants.py", "lazyhelper.py", "environment"])
def test_editing_what_a_plugin_reaches_recomputes_the_run(edit, tiny_voc, protocol_file, tmp_path):
    plugin = _write_reach_plugin(tmp_path / "plugin")
    results = tmp_path / "results"
    args = run_args(tiny_voc, protocol_file, results, "--method", "reach", "--plugin", plugin)
    first = subprocess_cli(*args, cwd=tmp_path)
    assert first.returncode == 0 and "1 completed" in first.stdout, first.stderr
    (before,) = [records_of(folder) for folder in run_folders(results, "reach")]
    env = {}
    if edit == "environment":
        env = {"REACH_BIAS": "-0.6"}
    else:
        text = (tmp_path / "plugin" / edit).read_text()
        changed = {"reachpkg/sub.py": text.replace("0.0", "-0.6"), "constants.py": text.replace("0.0", "-0.6"),
                   "lazyhelper.py": text.replace("1.0", "0.0")}[edit]
        (tmp_path / "plugin" / edit).write_text(changed + "# edited\n")
    again = subprocess_cli(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "0 already complete" in again.stdout, (again.stdout, again.stderr)
    fresh = subprocess_cli(*run_args(tiny_voc, protocol_file, tmp_path / "fresh", "--method", "reach", "--plugin", plugin),
                           env=env, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    newest = max(run_folders(results, "reach"), key=lambda d: (d / "run.json").stat().st_mtime_ns)
    (fresh_folder,) = run_folders(tmp_path / "fresh", "reach")
    assert records_of(newest) == records_of(fresh_folder) != before  # the edit changed the numbers
    info = json.loads((newest / "run.json").read_text())
    names = {entry["name"] for entry in info["code_closure"]}
    assert {"reach.py", "reachpkg/sub.py", "reachpkg/__init__.py", "constants.py", "lazyhelper.py",
            "fsseg_bench.preprocess", "fsseg_bench.scoring", "fsseg_bench.metrics"} <= names, names
    if edit == "environment":
        assert info["environment"] == {"REACH_BIAS": "-0.6"}


def test_a_comment_or_docstring_edit_keeps_the_identity(tiny_voc, protocol_file, tmp_path):
    plugin = _write_reach_plugin(tmp_path / "plugin")
    args = run_args(tiny_voc, protocol_file, tmp_path / "results", "--method", "reach", "--plugin", plugin)
    assert subprocess_cli(*args).returncode == 0
    sub = tmp_path / "plugin" / "reachpkg" / "sub.py"
    sub.write_text('"""A docstring."""\n\n\n# a comment\ndef threshold():   # another\n    return 0.0\n')
    again = subprocess_cli(*args)
    assert again.returncode == 0 and "1 already complete" in again.stdout, again.stdout


def test_a_module_edited_after_import_in_a_long_lived_process_is_refused(tiny_voc, protocol_file, tmp_path, capsys):
    plugin = _write_reach_plugin(tmp_path / "plugin")
    args = run_args(tiny_voc, protocol_file, tmp_path / "results", "--method", "reach", "--plugin", plugin)
    assert cli(capsys, *args)[0] == 0
    (tmp_path / "plugin" / "constants.py").write_text("OFFSET = -0.6\n")
    code, out, err = cli(capsys, *args)
    assert code == 2 and "constants.py: edited after this process imported it" in err, err


# --- 3. weights by content -----------------------------------------------------------------------

def test_weights_are_identified_by_their_bytes_not_their_path(tiny_voc, protocol_file, tmp_path, capsys):
    from fsseg_bench.backbones import SmallCNN

    weights = tmp_path / "weights.pt"
    results, store = tmp_path / "results", tmp_path / "store"
    torch.manual_seed(1)
    torch.save(SmallCNN().state_dict(), weights)
    args = run_args(tiny_voc, protocol_file, results, "--method", "knn", "--weights", weights, "--feature-store", store)
    assert cli(capsys, *args)[0] == 0
    torch.manual_seed(2)
    torch.save(SmallCNN().state_dict(), weights)  # another file at the same path
    code, out, _ = cli(capsys, *args)
    assert code == 0 and "1 completed, 0 already complete" in out, out
    old, new = sorted(run_folders(results, "knn"), key=lambda d: (d / "run.json").stat().st_mtime_ns)
    fresh = tmp_path / "fresh"
    assert cli(capsys, *run_args(tiny_voc, protocol_file, fresh, "--method", "knn", "--weights", weights,
                                 "--no-cache"))[0] == 0
    assert records_of(new) == records_of(run_folders(fresh, "knn")[0]) != records_of(old)
    info = json.loads((new / "run.json").read_text())
    assert info["weights_sha256"] == [["weights", __import__("hashlib").sha256(weights.read_bytes()).hexdigest()]]
    assert info["pretrained"] is True


# --- 4. harness code on the record path: preprocessing -------------------------------------------

def _copy_checkout(destination: Path) -> Path:
    for part in ("fsseg_bench", "methods", "protocols"):
        shutil.copytree(REPO / part, destination / part, ignore=shutil.ignore_patterns("__pycache__", "episodes"))
    shutil.copyfile(REPO / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_editing_preprocessing_code_is_a_new_run(tiny_voc, protocol_file, tmp_path):
    checkout = _copy_checkout(tmp_path / "checkout")
    env = {"PYTHONPATH": str(checkout)}
    args = run_args(tiny_voc, protocol_file, tmp_path / "results", "--method", "knn", "--no-cache")
    where = subprocess.run([sys.executable, "-c", "import fsseg_bench; print(fsseg_bench.__file__)"], capture_output=True,
                           text=True, env={**os.environ, **env}, cwd=tmp_path)
    assert where.stdout.startswith(str(checkout)), where.stdout
    assert subprocess_cli(*args, env=env, cwd=tmp_path).returncode == 0
    preprocess = checkout / "fsseg_bench" / "preprocess.py"
    preprocess.write_text(preprocess.read_text().replace("[0.485, 0.456, 0.406]", "[0.3, 0.3, 0.3]"))
    again = subprocess_cli(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "1 completed, 0 already complete" in again.stdout, (again.stdout, again.stderr)


# --- 5. an image rewritten with the same size and mtime ------------------------------------------

def test_an_image_rewritten_with_same_size_and_mtime_is_seen(tiny_voc, protocol_file, tmp_path, capsys):
    results = tmp_path / "results"
    args = run_args(tiny_voc, protocol_file, results, "--method", "knn")
    assert cli(capsys, *args)[0] == 0
    image = locate_voc(tiny_voc).image_path("img_a")
    stat = image.stat()
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01  # other bytes, same size
    image.write_bytes(bytes(data))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    code, out, _ = cli(capsys, *args)
    assert code == 0 and "1 completed" in out, out
    shas = {json.loads((d / "run.json").read_text())["data_sha256"] for d in run_folders(results, "knn")}
    assert len(shas) == 2


# --- 6. a protocol file that takes a built-in's name ---------------------------------------------

def test_a_protocol_named_like_a_builtin_draws_its_own_episodes(synthetic_root, tmp_path, capsys):
    builtin = (REPO / "protocols" / "synthetic5i.toml").read_text()
    mine = tmp_path / "mine.toml"
    text = builtin.split("[episode_sha256]")[0].replace('query_sampling = "class-uniform"', 'query_sampling = "cycle-pairs"')
    text = text.replace("episodes = 200", "episodes = 30")
    assert 'query_sampling = "cycle-pairs"' in text and "episodes = 30" in text
    mine.write_text(text)
    code, out, err = cli(capsys, "run", "--protocol", mine, "--data-root", synthetic_root, "--results", tmp_path / "r",
                         "--method", "all-foreground", "--fold", "0", "--shot", "1", "--seed", "1234", "--quiet",
                         "--workers", "1")
    assert code == 0, err
    (folder,) = run_folders(tmp_path / "r", "all-foreground", "synthetic5i")
    info = json.loads((folder / "run.json").read_text())
    assert info["episode_source"]["kind"] == "generated" and info["n_episodes"] == 30


# --- 7. two versions of one protocol name in one results folder ----------------------------------

def test_two_versions_of_one_protocol_are_never_one_row(synthetic_root, tmp_path, capsys):
    builtin = (REPO / "protocols" / "synthetic5i.toml").read_text().split("[episode_sha256]")[0]
    big, small = tmp_path / "big.toml", tmp_path / "small.toml"
    big.write_text(builtin)
    small.write_text(builtin.replace("image_size = [64, 64]", "image_size = [32, 32]"))
    assert small.read_text() != big.read_text()
    for path, fold in ((big, 0), (small, 1)):
        assert cli(capsys, "run", "--protocol", path, "--data-root", synthetic_root, "--results", tmp_path / "r",
                   "--method", "support-copy", "--fold", fold, "--shot", "1", "--seed", "1234", "--limit", "5",
                   "--quiet", "--workers", "1")[0] == 0
    code, out, err = cli(capsys, "table", "--results", tmp_path / "r", "--resamples", "20")
    one_line_error(code, err, "2 versions of protocol 'synthetic5i'", "big.toml", "small.toml")
    code, out, err = cli(capsys, "table", "--results", tmp_path / "r", "--protocol", small, "--format", "csv",
                         "--resamples", "20")
    assert code == 0 and "1 run(s) of another version" in err, err
    table = pd.read_csv(__import__("io").StringIO(out))
    assert set(table["fold"].astype(str)) - {"mean"} == {"1"}


# --- 8. train has an identity ---------------------------------------------------------------------

def test_train_retrains_when_its_data_or_code_change(tiny_voc, tmp_path, capsys):
    protocol = tmp_path / "train.toml"
    protocol.write_text(PROTOCOL + "[training]\nepisodes = 4\ncheckpoint_every = 2\n")
    args = ["train", "--protocol", protocol, "--data-root", tiny_voc, "--results", tmp_path / "r", "--method",
            "panet", "--fold", "0", "--shot", "1", "--quiet"]
    assert cli(capsys, *args)[0] == 0
    final = tmp_path / "r" / "checkpoints" / "tiny" / "panet" / "fold0-shot1" / "final.pt"
    first = final.read_bytes()
    code, out, err = cli(capsys, *args)
    assert code == 0 and final.read_bytes() == first  # nothing changed: reused
    tree = locate_voc(tiny_voc)
    mask = np.array(__import__("PIL.Image", fromlist=["Image"]).open(tree.mask_path("img_c")))
    mask[10:18, 10:20] = 6  # a base class's pixels change (train split)
    write_mask_png(tree.mask_path("img_c"), mask)
    code, out, err = cli(capsys, *args)
    assert code == 0 and "data_sha256" in err and "training a new checkpoint" in err, err
    assert final.read_bytes() != first
    assert len(list(final.parent.glob("superseded/final-*.pt"))) == 1


# --- 9. in-process caches keyed by content --------------------------------------------------------

def test_the_api_twice_in_one_process_after_editing_a_mask_matches_a_fresh_process(tiny_voc, protocol_file, tmp_path):
    import fsseg_bench as fb

    results = tmp_path / "results"
    kwargs = dict(folds=[0], shots=[1], seeds=[5], results=results, data_root=tiny_voc)
    assert fb.run(protocol_file, ["support-copy"], **kwargs)[0].status == "complete"
    tree = locate_voc(tiny_voc)
    path = tree.mask_path("img_b")
    stat = path.stat()
    mask = np.array(__import__("PIL.Image", fromlist=["Image"]).open(path))
    mask[:, :] = np.where(mask == 1, 0, mask)
    mask[2:6, 2:6] = 1  # a smaller object, and the file rewritten in place
    write_mask_png(path, mask)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fb.run(protocol_file, ["support-copy"], **kwargs)[0].status == "complete"
    newest = max(run_folders(results, "support-copy"), key=lambda d: (d / "run.json").stat().st_mtime_ns)
    fresh = subprocess_cli(*run_args(tiny_voc, protocol_file, tmp_path / "fresh", "--method", "support-copy"))
    assert fresh.returncode == 0, fresh.stderr
    (fresh_folder,) = run_folders(tmp_path / "fresh", "support-copy")
    assert newest.name == fresh_folder.name and records_of(newest) == records_of(fresh_folder)


# --- 10. checkpoints are verified ------------------------------------------------------------------

@pytest.fixture
def trained(tiny_voc, tmp_path, capsys):
    protocol = tmp_path / "train.toml"
    protocol.write_text(PROTOCOL + "[training]\nepisodes = 3\n")
    assert cli(capsys, "train", "--protocol", protocol, "--data-root", tiny_voc, "--results", tmp_path / "r",
               "--method", "panet", "--fold", "0", "--shot", "1", "--quiet")[0] == 0
    return protocol, tmp_path / "r" / "checkpoints" / "tiny" / "panet" / "fold0-shot1" / "final.pt"


@pytest.mark.parametrize("damage", ["flipped", "missing-key", "wrong-shape", "nan"])
def test_a_damaged_checkpoint_is_refused_before_any_run(damage, trained, tiny_voc, tmp_path, capsys):
    from fsseg_bench.checkpoints import tensors_sha256

    protocol, final = trained
    payload = torch.load(final, weights_only=True)
    state = payload["state_dict"]
    name = next(iter(state))
    if damage == "flipped":  # the recorded state_sha256 kept: the genuine recipe, other tensors
        state[name] = state[name].clone()
        state[name].view(-1)[0] += 1.0
    else:
        if damage == "missing-key":
            state.pop(name)
        elif damage == "wrong-shape":
            state[name] = state[name][..., :1].clone()
        else:
            state[name] = state[name].clone()
            state[name].view(-1)[0] = float("nan")
        payload["state_sha256"] = tensors_sha256(state)  # consistent, so only the check named fails
    torch.save(payload, final)
    code, out, err = cli(capsys, "run", "--protocol", protocol, "--data-root", tiny_voc, "--results", tmp_path / "r",
                         "--method", "panet", "knn", "--quiet", "--workers", "1")
    fragment = {"flipped": "do not match the state_sha256", "missing-key": "checkpoint lacks",
                "wrong-shape": "has shape", "nan": "NaN or infinite"}[damage]
    one_line_error(code, err, str(final), fragment)
    assert not (tmp_path / "r" / "runs").exists()  # checked before any run started


# --- 11. notebooks --------------------------------------------------------------------------------

NOTEBOOK_CELL = '''
import torch
import fsseg_bench as fb


@fb.register_method("nb-method", description="defined in a notebook cell")
class NotebookMethod(fb.Method):
    def predict(self, episode):
        weights = [w * 2 for w in range(3)]  # a nested code object (the comprehension)
        score = (lambda m: m.float().mean(dim=0))(episode.support_masks == 1)
        return torch.stack([torch.full_like(score, 0.5), score])[None].expand(episode.query_images.shape[0], -1, -1, -1)
'''


def _execute_cell(pid: int):
    code = compile(NOTEBOOK_CELL, f"/tmp/ipykernel_{pid}/1234567.py", "exec")
    namespace = {"__name__": "__main__"}
    exec(code, namespace)
    return namespace["NotebookMethod"]


def test_a_notebook_method_has_one_fingerprint_whatever_the_kernel(capsys):
    from fsseg_bench.fingerprints import code_fingerprint
    from fsseg_bench.registry import get_entry

    first = _execute_cell(111)
    fingerprint, _, how = code_fingerprint(first)
    assert how == "bytecode"
    second = _execute_cell(222)  # the same notebook, another kernel; the cell run again
    assert code_fingerprint(second)[0] == fingerprint
    assert get_entry("nb-method").factory is second  # replaced, not "registered twice"
    assert capsys.readouterr().err.count("registered again from __main__") == 1
    changed = compile(NOTEBOOK_CELL.replace("0.5", "0.25"), "/tmp/ipykernel_333/1.py", "exec")
    namespace = {"__name__": "__main__"}
    exec(changed, namespace)
    assert code_fingerprint(namespace["NotebookMethod"])[0] != fingerprint


# --- 12. escaping -----------------------------------------------------------------------------------

def test_labels_are_escaped_in_markdown_and_latex(synthetic_root, tmp_path, capsys):
    for label, limit in (("a|b <b>x</b>", 3), ("c--d", 4)):  # two limits: two runs, two rows
        assert cli(capsys, "run", "--data-root", synthetic_root, "--results", tmp_path, "--method", "support-copy",
                   "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", limit, "--label", label, "--quiet",
                   "--workers", "1")[0] == 0
    code, out, _ = cli(capsys, "table", "--results", tmp_path, "--resamples", "20")
    rows = [line for line in out.splitlines() if line.startswith("| a") or line.startswith("| c")]
    header = out.splitlines()[0]
    assert len(rows) == 2 and all(row.count(" | ") == header.count(" | ") for row in rows), out
    assert "a\\|b &lt;b&gt;x&lt;/b&gt;" in out
    code, out, _ = cli(capsys, "table", "--results", tmp_path, "--format", "latex", "--resamples", "20")
    assert "c-{}-d" in out and "\\textbar{}" in out and "<b>" not in out


# --- 13. no traceback, nothing half-written -----------------------------------------------------------

def test_a_truncated_standin_manifest_rewrites_the_tree(tmp_path, capsys):
    from fsseg_bench.data.synthetic import SyntheticConfig, write_synthetic_tree

    config = SyntheticConfig(n_train=6, n_val=6)
    voc = write_synthetic_tree(tmp_path, config)
    manifest = voc / "synthetic5i.json"
    manifest.write_text(manifest.read_text()[:20])  # a crash mid-write, or a truncated copy
    (voc / "JPEGImages" / "syn_000000.jpg").write_bytes(b"")
    assert write_synthetic_tree(tmp_path, config) == voc
    assert json.loads(manifest.read_text())["generator"] == "synthetic5i"
    assert (voc / "JPEGImages" / "syn_000000.jpg").stat().st_size > 0


def test_symlink_loops_are_one_line(tiny_voc, protocol_file, tmp_path, capsys):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    code, _, err = cli(capsys, *run_args(loop, protocol_file, tmp_path / "r", "--method", "knn"))
    one_line_error(code, err, "loop")
    image = locate_voc(tiny_voc).image_path("img_a")
    image.unlink()
    os.symlink(image, image)
    code, _, err = cli(capsys, *run_args(tiny_voc, protocol_file, tmp_path / "r", "--method", "knn"))
    one_line_error(code, err, "img_a.jpg", "cannot be read")


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_one_line(tiny_voc, protocol_file, tmp_path, capsys):
    from PIL import Image

    mask = locate_voc(tiny_voc).mask_path("img_a")
    mask.write_bytes(_png_claiming(30000, 30000))  # 900 Mpx: over twice PIL's MAX_IMAGE_PIXELS
    assert 30000 * 30000 > 2 * Image.MAX_IMAGE_PIXELS
    code, _, err = cli(capsys, *run_args(tiny_voc, protocol_file, tmp_path / "r", "--method", "knn"))
    one_line_error(code, err, "img_a.png")


def test_an_unwritable_results_folder_is_found_up_front(tiny_voc, protocol_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = cli(capsys, *run_args(tiny_voc, protocol_file, blocker / "results", "--method", "knn"))
    one_line_error(code, err, "a-file/results", "not writable")


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tiny_voc, protocol_file, tmp_path, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this machine")
    results = tmp_path / "r"
    args = run_args(tiny_voc, protocol_file, results, "--method", "support-copy")
    assert cli(capsys, *args)[0] == 0
    (folder,) = run_folders(results, "support-copy")
    (folder / "records.jsonl").unlink()
    os.symlink("/dev/full", folder / "records.jsonl")  # every write to it: ENOSPC
    code, _, err = cli(capsys, *args, "--force")
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and any("records.jsonl: cannot write records" in line for line in lines), err
    assert not list(results.rglob("*.tmp*"))


def test_absurd_image_size_and_a_failing_plugin_are_one_line(tiny_voc, tmp_path, capsys):
    huge = tmp_path / "huge.toml"
    huge.write_text(PROTOCOL.replace("image_size = [16, 16]", "image_size = [100000, 16]"))
    code, _, err = cli(capsys, *run_args(tiny_voc, huge, tmp_path / "r", "--method", "knn"))
    one_line_error(code, err, "huge.toml", "image_size", "8..4096")
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\nraise RuntimeError('oops')\n")
    protocol = tmp_path / "tiny.toml"
    protocol.write_text(PROTOCOL)
    code, _, err = cli(capsys, *run_args(tiny_voc, protocol, tmp_path / "r", "--method", "knn", "--plugin", broken))
    one_line_error(code, err, "broken.py:3", "failed to import", "RuntimeError: oops")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    code, _, err = cli(capsys, "methods", "--plugin", syntax)
    one_line_error(code, err, "syntax.py:1", "failed to import")


def test_bad_input_writes_nothing(tiny_voc, protocol_file, tmp_path, capsys):
    results = tmp_path / "r"
    code, _, err = cli(capsys, *run_args(tiny_voc, protocol_file, results, "--method", "panet",
                                         "--checkpoint", f"panet={tmp_path / 'missing.pt'}"))
    assert code == 2
    code, _, err = cli(capsys, *run_args(tiny_voc, protocol_file, results, "--method", "panet"))
    one_line_error(code, err, "no checkpoint")
    assert not results.exists() or not any(results.rglob("*")), list(results.rglob("*"))


# --- the closure is complete: every harness module executed on the record path is hashed ----------

def test_every_harness_module_run_while_records_are_computed_is_in_the_closure(tiny_voc, protocol_file, tmp_path):
    from fsseg_bench.fingerprints import is_orchestration
    from fsseg_bench.runner import plan_runs, run_one
    from fsseg_bench.protocol import load_protocol

    package = Path(__import__("fsseg_bench").__file__).parent
    executed: set[str] = set()

    def profile(frame, event, arg):
        if event == "call":
            executed.add(frame.f_code.co_filename)

    (request,) = plan_runs(load_protocol(protocol_file), ["panet-init"], results_dir=tmp_path / "r", folds=[0],
                           shots=[1], seeds=[5], data_root=str(tiny_voc), use_cache=False)
    sys.setprofile(profile)
    try:
        outcome = run_one(request)
    finally:
        sys.setprofile(None)
    assert outcome.status == "complete", outcome.message
    closure = {entry["path"] for entry in json.loads((Path(outcome.run_dir) / "run.json").read_text())["code_closure"]}
    for filename in executed:
        path = Path(filename)
        if package not in path.parents:
            continue
        name = ".".join(("fsseg_bench", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        assert str(path.resolve()) in closure or is_orchestration(name), f"{name} runs on the record path unhashed"
    for name in ("fsseg_bench.scoring", "fsseg_bench.metrics", "fsseg_bench.preprocess", "fsseg_bench.resample",
                 "fsseg_bench.data.voc", "fsseg_bench.prototypes", "fsseg_bench.backbones.cnn",
                 "fsseg_bench.backbones.registry", "fsseg_bench.runner.execute"):
        assert str((package / (name.removeprefix("fsseg_bench.").replace(".", "/") + ".py")).resolve()) in closure, name
