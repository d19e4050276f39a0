"""Every bad input gets one line naming the file or value, exit code 2, and no traceback."""

import subprocess
import sys

import numpy as np
from pathlib import Path

import pytest

from fsseg_bench.cli import main
from fsseg_bench.data.png import write_mask_png
from fsseg_bench.data.source import episode_list_for
from fsseg_bench.data.voc import locate_voc
from fsseg_bench.episodes import EpisodeSpec, write_episode_list
from fsseg_bench.protocol import load_protocol
from helpers import TINY_PROTOCOL



@pytest.fixture
def tiny_protocol(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROTOCOL)
    return path


def run_episodes(capsys, tiny_voc, protocol, *extra):
    code = main(["episodes", "--protocol", str(protocol), "--data-root", str(tiny_voc),
                 "--results", str(tiny_voc.parent / "results"), *extra])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def assert_one_line(code, err, *fragments):
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_good_input_writes_a_list(capsys, tiny_voc, tiny_protocol, tmp_path):
    out = tmp_path / "list.jsonl"
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol, "--out", str(out))
    assert code == 0 and err == ""
    assert len(out.read_text().splitlines()) == 6


def test_missing_root(capsys, tiny_voc, tiny_protocol, tmp_path):
    code, err = run_episodes(capsys, tmp_path / "nowhere", tiny_protocol)
    assert_one_line(code, err, "nowhere: data root not found")


def test_root_without_voc_layout(capsys, tiny_protocol, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = run_episodes(capsys, tmp_path / "empty", tiny_protocol)
    assert_one_line(code, err, "empty: no JPEGImages/")


def test_missing_list(capsys, tiny_voc, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(TINY_PROTOCOL.replace('split = "val"', 'split = "test"'))
    code, err = run_episodes(capsys, tiny_voc, path)
    assert_one_line(code, err, "ImageSets/Segmentation/test.txt: image list for split 'test' not found")


@pytest.mark.parametrize("kind", ["image", "mask"])
def test_missing_image_or_mask(capsys, tiny_voc, tiny_protocol, kind):
    tree = locate_voc(tiny_voc)
    path = tree.image_path("img_c") if kind == "image" else tree.mask_path("img_c")
    path.unlink()
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol)
    assert_one_line(code, err, f"{path}: {kind} of image id 'img_c'", "not found")


def test_corrupt_image(capsys, tiny_voc, tiny_protocol):
    path = locate_voc(tiny_voc).image_path("img_d")
    path.write_bytes(b"\xff\xd8 definitely not a jpeg")
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol)
    assert_one_line(code, err, f"{path}: unreadable or corrupt image")


def test_corrupt_png(capsys, tiny_voc, tiny_protocol):
    path = locate_voc(tiny_voc).mask_path("img_d")
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol)
    assert_one_line(code, err, f"{path}: unreadable or corrupt PNG")


def test_mask_size_differs_from_image(capsys, tiny_voc, tiny_protocol):
    path = locate_voc(tiny_voc).mask_path("img_e")
    write_mask_png(path, np.zeros((10, 10), dtype=np.uint8))
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol)
    assert_one_line(code, err, f"{path}: mask size 10x10 != image size 24x20")


def test_mask_value_out_of_range(capsys, tiny_voc, tiny_protocol):
    path = locate_voc(tiny_voc).mask_path("img_e")
    mask = np.zeros((20, 24), dtype=np.uint8)
    mask[3, 3] = 42
    write_mask_png(path, mask)
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol)
    assert_one_line(code, err, f"{path}: mask value 42 outside 0..20 and 255")


def test_class_with_too_few_images(capsys, tiny_voc, tiny_protocol):
    code, err = run_episodes(capsys, tiny_voc, tiny_protocol, "--shot", "5")
    assert_one_line(code, err, "class 1 (aeroplane): 3 images", "expected at least shots + 1 = 6")


def test_episode_id_missing_from_tree(tiny_voc, tmp_path, monkeypatch, tiny_protocol):
    import fsseg_bench.episodes as episodes_module
    import fsseg_bench.protocol as protocol_module
    # A committed list belongs to a committed protocol's bytes: commit the tiny protocol and a list.
    monkeypatch.setattr(episodes_module, "EPISODES_DIR", tmp_path / "committed" / "episodes")
    monkeypatch.setattr(protocol_module, "PROTOCOLS_DIR", tmp_path / "committed")
    (tmp_path / "committed").mkdir()
    (tmp_path / "committed" / "tiny.toml").write_bytes(Path(tiny_protocol).read_bytes())
    protocol = load_protocol(tiny_protocol)
    write_episode_list(tmp_path / "committed" / "episodes" / "tiny" / "fold0-shot1-seed5.jsonl",
                       [EpisodeSpec(0, 1, ("img_a",), ("img_zz",))])
    from fsseg_bench.errors import InputError
    with pytest.raises(InputError, match="episode 0 names image id 'img_zz', which is not in split 'val'"):
        episode_list_for(protocol, locate_voc(tiny_voc), 0, 1, 5, tmp_path / "results")


def test_unknown_protocol_key_and_bad_value(capsys, tiny_voc, tmp_path):
    bad_key = tmp_path / "k.toml"
    bad_key.write_text(TINY_PROTOCOL + 'shotz = [1]\n')
    code, err = run_episodes(capsys, tiny_voc, bad_key)
    assert_one_line(code, err, "k.toml: unknown key 'shotz'")
    bad_value = tmp_path / "v.toml"
    bad_value.write_text(TINY_PROTOCOL.replace('"class-uniform"', '"random"'))
    code, err = run_episodes(capsys, tiny_voc, bad_value)
    assert_one_line(code, err, "v.toml: key 'query_sampling' = 'random': expected one of class-uniform | cycle-pairs | walk-images")
    bad_folds = tmp_path / "f.toml"
    bad_folds.write_text(TINY_PROTOCOL.replace("folds = [0]", "folds = [0, 4]"))
    code, err = run_episodes(capsys, tiny_voc, bad_folds)
    assert_one_line(code, err, "key 'folds' = [0, 4]")


def test_unknown_protocol_name(capsys, tiny_voc):
    code, err = run_episodes(capsys, tiny_voc, "pascal5i-nope")
    assert_one_line(code, err, "protocol 'pascal5i-nope': not a file and not a built-in protocol")


def test_real_process_exit_code_and_debug(tmp_path):
    args = [sys.executable, "-m", "fsseg_bench", "episodes", "--protocol", "synthetic5i",
            "--data-root", str(tmp_path / "missing"), "--results", str(tmp_path / "r")]
    plain = subprocess.run(args, capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.strip() == f"fsseg-bench: error: {tmp_path / 'missing'}: data root not found (expected a VOC2012 folder or one holding VOCdevkit/VOC2012)"
    debug = subprocess.run(args[:3] + ["--debug"] + args[3:], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
