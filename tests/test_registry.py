"""The registry: built-ins by path, --plugin files, entry points, duplicates, close matches."""

import re
import sys
from pathlib import Path

import pytest

from fsseg_bench import registry
from fsseg_bench.cli import main
from fsseg_bench.errors import InputError

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_plugin_source() -> str:
    text = README.read_text()
    section = text[text.index("### Adding a method"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_is_short_and_loads_with_plugin_flag(tmp_path, capsys):
    source = readme_plugin_source()
    assert len(source.strip().splitlines()) < 40
    plugin = tmp_path / "mean_colour.py"
    plugin.write_text(source)
    assert main(["methods", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "mean-colour" in out and "nearest support mean colour per query pixel" in out
    assert f"plugin {plugin}" in out
    method = registry.create_method("mean-colour")
    assert type(method).__name__ == "MeanColour"


def test_builtins_are_discovered_by_path():
    entries = {e.name: e for e in registry.list_methods()}
    assert {"panet", "panet-noalign", "panet-init", "linear-probe", "knn", "support-copy",
            "all-foreground"} <= set(entries)
    assert entries["panet"].trainable and entries["panet-noalign"].trainable
    assert not entries["panet-init"].trainable and not entries["knn"].trainable
    assert entries["panet"].origin.startswith("built-in") and entries["panet"].origin.endswith("methods/panet.py")


def test_entry_point_registration(tmp_path, monkeypatch):
    (tmp_path / "ep_plugin_mod.py").write_text(
        "from fsseg_bench.method import Method\n"
        "class Constant(Method):\n"
        "    'predicts background everywhere'\n"
        "    def predict(self, episode):\n"
        "        import torch\n"
        "        q, _, h, w = episode.query_images.shape\n"
        "        return torch.zeros(q, 2, h, w)\n")
    dist = tmp_path / "ep_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fsseg_bench.methods]\nep-constant = ep_plugin_mod:Constant\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = {e.name: e for e in registry.list_methods()}
    assert "ep-constant" in names
    assert names["ep-constant"].origin == "entry point ep-constant = ep_plugin_mod:Constant"
    assert names["ep-constant"].description == "predicts background everywhere"


def test_duplicate_name_names_both_origins(tmp_path):
    plugin = tmp_path / "dup.py"
    plugin.write_text("from fsseg_bench.registry import register_method\n"
                      "from fsseg_bench.method import Method\n"
                      "@register_method('knn')\n"
                      "class Other(Method):\n    pass\n")
    with pytest.raises(InputError) as info:
        registry.load_plugin_file(plugin)
    message = str(info.value)
    assert "method 'knn' registered twice" in message
    assert "methods/baselines.py" in message and str(plugin) in message


def test_unknown_name_suggests_close_matches():
    with pytest.raises(InputError, match=r"unknown method 'panet-noalgn'; did you mean 'panet-noalign'"):
        registry.create_method("panet-noalgn")


def test_unknown_option_is_named():
    with pytest.raises(InputError, match=r"method 'knn': unknown option 'kk'"):
        registry.create_method("knn", kk=3, backbone="smallcnn")


def test_missing_plugin_file(capsys, tmp_path):
    assert main(["methods", "--plugin", str(tmp_path / "nope.py")]) == 2
    assert "nope.py: plugin file not found" in capsys.readouterr().err
