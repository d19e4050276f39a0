"""Issue 21 (in part): comparisons of a method with several configurations, p at the test's floor,
one-line usage errors and ranges, name suggestions, public metrics for one's own loop."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fsseg_bench.cli import main


@pytest.fixture(scope="module")
def two_configs(tmp_path_factory, synthetic_root):
    """support-copy, and knn at k=5 (its default) and k=3: two rows of one method."""
    results = tmp_path_factory.mktemp("two-configs")
    common = ["--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(results),
              "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", "12", "--quiet"]
    assert main(["run", "--method", "support-copy", "knn", *common]) == 0
    assert main(["run", "--method", "knn", "--option", "k=3", *common]) == 0
    return results


def test_compare_a_method_with_two_configurations_compares_each_row(two_configs, capsys):
    capsys.readouterr()
    assert main(["compare", "support-copy", "knn", "--results", str(two_configs), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "knn has 2 rows (knn (k=3); knn (k=5)): each is compared" in out
    assert "knn (k=3) − support-copy" in out and "knn (k=5) − support-copy" in out
    # The one-row spelling still gives the two-way comparison.
    assert main(["compare", "support-copy", "knn (k=3)", "--results", str(two_configs), "--resamples", "200"]) == 0
    assert "knn (k=3) − support-copy, miou in points" in capsys.readouterr().out


def test_the_api_compare_is_a_dataframe_in_points(two_configs):
    import fsseg_bench as fb
    from fsseg_bench.report.compare import compare_methods

    records = fb.load_results(two_configs, "synthetic5i")
    frame = fb.compare(records, "support-copy", "knn", resamples=200)
    assert isinstance(frame, pd.DataFrame)
    assert sorted(frame["b"]) == ["knn (k=3)", "knn (k=5)"] and set(frame["a"]) == {"support-copy"}
    for row in frame.itertuples():
        raw = compare_methods(records, "support-copy", row.b, resamples=200)[1][0]
        assert row.difference == pytest.approx(100 * raw.difference) and row.p_value == raw.p_value
        assert row.ci_low <= row.difference <= row.ci_high
        assert row.p_at_floor == (raw.p_value <= 1 / 201 + 1e-12)
    # knn beats support-copy by tens of points on the stand-in: far beyond any noise.
    assert (frame["difference"] > 10).all()


def test_p_at_the_floor_is_shown_as_below_it(two_configs, capsys):
    from fsseg_bench.report.tables import format_p

    assert format_p(1 / 1001, 1000) == "p<1/1001" and format_p(0.0421, 1000) == "p=0.042"
    capsys.readouterr()
    assert main(["compare", "support-copy", "knn (k=5)", "--results", str(two_configs), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "p<1/201" in out and "p=0.005" not in out
    # One paired run: P(b > a) is a sign, printed without an interval.
    assert "one paired run" in out


def test_usage_errors_are_one_line_and_ranges_are_accepted(capsys):
    from fsseg_bench.cli import build_parser

    args = build_parser().parse_args(["run", "--method", "knn", "--fold", "0-2", "--shot", "1", "5", "--seed", "3"])
    assert (args.fold, args.shot, args.seed) == ([0, 1, 2], [1, 5], [3])
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--method", "knn", "--fold", "1-x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'1-x': expected an integer or an inclusive range" in err
    assert "usage:" not in err


def test_names_get_case_insensitive_suggestions_and_a_plugin_hint(two_configs, capsys):
    assert main(["run", "--method", "PANet", "--limit", "1"]) == 2
    assert "did you mean 'panet'" in capsys.readouterr().err
    assert main(["run", "--method", "mean-colour", "--limit", "1"]) == 2
    assert "--plugin FILE.py" in capsys.readouterr().err
    assert main(["table", "--results", str(two_configs), "--method", "KNN"]) == 2
    err = capsys.readouterr().err
    assert "'KNN': did you mean 'knn'?" in err and "rows there: knn (k=3), knn (k=5), support-copy" in err


def test_public_metrics_by_hand():
    import fsseg_bench as fb

    # Episode 1 (class 3): TP 1, FP 1, TN 1, one void pixel. Episode 2 (class 4): 4 TN, no foreground.
    predictions = [np.array([[1, 1], [0, 0]]), np.zeros((2, 2), int)]
    labels = [np.array([[1, 0], [0, 255]]), np.zeros((2, 2), int)]
    scores = fb.metrics.scores_from_masks(predictions, labels, [3, 4])
    assert scores["miou"] == 50.0  # class 4 has nothing to score: left out
    assert scores["fbiou"] == pytest.approx(100 * 0.5 * (1 / 2 + 5 / 6))
    assert scores["fbiou_panet_metric"] == pytest.approx(100 * 0.5 * (1 / 2 + 5 / 6))
    assert scores["miou_panet_metric"] == 50.0 and scores["episode_miou"] == 50.0
    with pytest.raises(ValueError):
        fb.metrics.scores_from_counts([1], np.zeros((2, 6)))


def test_public_metrics_from_records_equal_the_table(two_configs, capsys):
    import fsseg_bench as fb
    from fsseg_bench.metrics import COUNT_COLUMNS

    records = fb.load_results(two_configs, "synthetic5i")
    knn = records[records.method == "knn (k=3)"]
    mine = fb.metrics.scores_from_counts(knn["class_id"], knn[list(COUNT_COLUMNS)].to_numpy())
    capsys.readouterr()
    assert main(["table", "--results", str(two_configs), "--format", "csv", "--resamples", "200"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"fold": str})
    cell = table[(table.method == "knn (k=3)") & (table.fold == "0") & (table.ci_method == "none")]
    for metric in ("miou", "fbiou", "miou_panet_metric", "fbiou_panet_metric"):
        assert cell[cell.metric == metric]["value"].iloc[0] == pytest.approx(mine[metric], abs=1e-9), metric
    # Intervals never leave the range of an IoU, however few the episodes.
    assert table["ci_low"].dropna().min() >= 0 and table["ci_high"].dropna().max() <= 100


def test_table_json_is_the_versioned_results_document(two_configs, capsys):
    import json

    capsys.readouterr()
    assert main(["table", "--results", str(two_configs), "--format", "json", "--resamples", "200"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["schema"] == "fsseg-bench-results/1"
    assert document["protocol"]["name"] == "synthetic5i" and len(document["protocol"]["sha256"]) == 64
    rows = {row["row"]: row for row in document["rows"]}
    assert set(rows) == {"knn (k=3)", "knn (k=5)", "support-copy"}
    knn = rows["knn (k=3)"]
    assert knn["method"] == "knn" and knn["config"]["k"] == 3 and knn["pretrained"] is True
    (run,) = knn["runs"]
    info = json.loads((Path(run["run_dir"]) / "run.json").read_text())
    assert run["episode_list_sha256"] == info["episode_list_sha256"] and run["data_sha256"] == info["data_sha256"]
    assert knn["code_sha256"] == [info["code_sha256"]] and knn["software"]["torch"]
    # The same values as the CSV, and exactly one primary interval per (shot, fold, metric).
    assert main(["table", "--results", str(two_configs), "--format", "csv", "--resamples", "200"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"fold": str})
    for cell in knn["cells"]:
        match = table[(table.method == "knn (k=3)") & (table.metric == cell["metric"]) & (table.fold == cell["fold"])
                      & (table.ci_method == cell["ci_method"])]
        assert match["value"].iloc[0] == pytest.approx(cell["value"], abs=1e-9)
    primaries = [(c["shot"], c["fold"], c["metric"]) for c in knn["cells"] if c["primary"]]
    assert len(primaries) == len(set(primaries)) == 5  # one fold x five metrics


def test_episodes_export_has_one_row_per_episode(two_configs, tmp_path, capsys):
    out = tmp_path / "episodes.csv"
    assert main(["table", "--results", str(two_configs), "--format", "episodes", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 3 * 12 and frame["train_seed"].isna().all()
    row = frame.iloc[0]
    assert row["iou"] == pytest.approx(100 * row["fg_intersection"] / row["fg_union"])
    assert frame.groupby("method")["index"].apply(sorted).map(lambda v: v == list(range(12))).all()


def test_run_ends_with_the_table_of_what_it_ran_and_results_json(synthetic_root, tmp_path, capsys):
    import json

    results = tmp_path / "results"
    assert main(["run", "--protocol", "synthetic5i", "--method", "support-copy", "--data-root", str(synthetic_root),
                 "--results", str(results), "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", "6"]) == 0
    out = capsys.readouterr().out
    assert "| support-copy" in out and "| Method |" in out
    document = json.loads((results / "runs" / "synthetic5i" / "results.json").read_text())
    assert [row["row"] for row in document["rows"]] == ["support-copy"]


def test_the_report_flags_single_runs_and_resolves_p_below_the_floor(two_configs, tmp_path):
    import fsseg_bench as fb
    from fsseg_bench.comparisons import pairwise
    from fsseg_bench.report.html import write_report

    text = write_report(two_configs, tmp_path / "site", resamples=200).read_text()
    assert "(one run: no interval)" in text and "P(row&gt;col): one paired run" in text
    # knn vs support-copy is beyond every one of 200 sign flips: the permutation p is at its floor
    # 1/201. Holm adjusts the resolved p: the normal tail of the same null where it is lower than
    # the floor (shown "≈"), else the floor itself (shown "<": over 12 episodes the normal tail is
    # no sharper than the floor). `test_stats` checks the tail against resolvable permutation p.
    from fsseg_bench.comparisons import holm

    records = fb.load_results(two_configs, "synthetic5i")
    pairs = pairwise(records, sorted(records["method"].unique()), resamples=200)
    floor = 1 / 201
    beyond = pairs[pairs.p_value <= floor + 1e-12]
    assert len(beyond) == 2
    for pair in pairs.itertuples():
        at_floor = pair.p_value <= floor + 1e-12
        expected = pair.p_tail if at_floor and pair.p_tail < floor else pair.p_value
        assert pair.p_resolved == expected
    np.testing.assert_allclose(pairs.p_holm, holm(pairs.p_resolved))
    resolved_any = bool((beyond.p_resolved < beyond.p_value).any())
    floor_any = bool((beyond.p_resolved == beyond.p_value).any())
    assert ("p_Holm≈" in text) == resolved_any and ("p_Holm&lt;" in text) == floor_any


def test_per_class_labels_never_overlap_and_colours_are_stable(two_configs, tmp_path):
    import fsseg_bench as fb
    from fsseg_bench.report.plots import method_colours, per_class_figure, tick_boxes

    records = fb.load_results(two_configs, "synthetic5i")
    long_names = {c: f"ellipse-stripes-h{c}rectangle-checker-h{100 + c}" for c in range(1, 21)}
    for names in (long_names, {c: f"c{c}" for c in range(1, 21)}):
        fig = per_class_figure(records, 1, names=names)
        for ax in fig.axes:
            boxes = tick_boxes(fig, ax)
            assert len(boxes) == records["class_id"].nunique()
            assert all(left.x1 <= right.x0 for left, right in zip(boxes, boxes[1:])), [
                (b.x0, b.x1) for b in boxes]
        if names[1] == "c1":  # short names stay as they are: upright text, one line
            assert all(t.get_rotation() == 0 and "\n" not in t.get_text() for t in fig.axes[0].get_xticklabels())
        else:  # the long ones had to be set another way than as they are
            assert any(t.get_rotation() == 90 or "\n" in t.get_text() for t in fig.axes[0].get_xticklabels())
    # A plugin's colour is its own, whatever is plotted beside it, and never a built-in's.
    alone = method_colours(["my-plugin"])["my-plugin"]
    crowd = method_colours(["hsnet", "panet", "knn", "my-plugin", "zzz"])
    assert crowd["my-plugin"] == alone and alone not in {crowd["hsnet"], crowd["panet"], crowd["knn"]}


def test_a_copied_results_folder_needs_neither_the_protocol_file_nor_the_data(synthetic_root, tmp_path, capsys):
    """A protocol given by path (PANet's FB-IoU chosen, a name that is not built in): its runs keep
    a copy of its bytes, so tables, comparisons and the report work on a copy of the folder."""
    import shutil

    from fsseg_bench.report.html import write_report

    text = (Path(__file__).resolve().parents[1] / "protocols" / "synthetic5i.toml").read_text()
    protocol = tmp_path / "mine.toml"
    protocol.write_text(text.replace('name = "synthetic5i"', 'name = "mine"\nfbiou_metric = "fbiou_panet_metric"'))
    results = tmp_path / "results"
    common = ["--protocol", str(protocol), "--data-root", str(synthetic_root), "--results", str(results),
              "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", "6", "--quiet"]
    assert main(["run", "--method", "support-copy", "knn", *common]) == 0
    import hashlib
    sha256 = hashlib.sha256(protocol.read_bytes()).hexdigest()
    assert (results / "protocols" / f"{sha256}.toml").read_bytes() == protocol.read_bytes()
    copied = tmp_path / "elsewhere" / "results"
    shutil.copytree(results, copied)
    protocol.unlink()
    capsys.readouterr()
    assert main(["table", "--results", str(copied), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "Protocol: mine." in out and "PANet's get_mIoU_binary" in out  # the copy's choice, not the default
    assert main(["compare", "support-copy", "knn", "--results", str(copied), "--resamples", "100"]) == 0
    page = write_report(copied, tmp_path / "site", resamples=100).read_text()
    assert "mine" in page
    # An edited copy is not used: its bytes no longer hash to the runs' protocol sha256.
    (copied / "protocols" / f"{sha256}.toml").write_text(text.replace('name = "synthetic5i"', 'name = "mine"'))
    assert main(["table", "--results", str(copied), "--resamples", "100"]) == 0
    assert "PANet's get_mIoU_binary" not in capsys.readouterr().out


def test_the_report_survives_partial_folds_seeds_and_shots(synthetic_root, tmp_path):
    from fsseg_bench.report.html import write_report

    results = tmp_path / "results"
    base = ["--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(results),
            "--limit", "6", "--quiet"]
    assert main(["run", "--method", "support-copy", "knn", "--fold", "0", "--shot", "1", "5", "--seed", "1234",
                 *base]) == 0
    assert main(["run", "--method", "knn", "--fold", "0", "1", "--shot", "1", "--seed", "1235", *base]) == 0
    page = write_report(results, tmp_path / "site", resamples=100)
    text = page.read_text()
    assert "support-copy" in text and "knn" in text and "1-shot vs 5-shot" in text


def test_ctrl_c_in_the_demo_while_training_stops_cleanly(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # A shell without job control starts background commands with SIGINT ignored, and children inherit
    # that: the demo is started as a terminal starts it, with Ctrl-C's default disposition.
    process = subprocess.Popen([sys.executable, "-m", "fsseg_bench", "demo", "--quick", "--workers", "2",
                                "--results", str(tmp_path / "results")], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    checkpoints = tmp_path / "results" / "checkpoints"
    while time.time() < deadline and not any(checkpoints.rglob("*")) and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (process.returncode, err[-3000:])
    assert "demo interrupted while training" in err and "Traceback" not in err, err[-3000:]
    assert not [p for p in checkpoints.rglob("*") if p.is_dir() and not any(p.iterdir())]  # no empty folders
    assert "demo (quick) finished" not in out


def test_progress_gives_each_worker_its_own_line_and_an_episode_eta(monkeypatch, capsys):
    from fsseg_bench.runner import executors

    monkeypatch.setattr(executors, "interactive", lambda *a: True)
    bars = executors.ProgressBars(4, quiet=False)
    bars("start", "a", 100)
    bars("start", "b", 100)
    assert bars.positions == {"a": 1, "b": 2}
    assert bars.estimated_total() == 400  # two runs of 100 known, two more of that size to come
    bars("advance", "a", 100)
    bars("end", "a", 0)
    bars("start", "c", 50)
    assert bars.positions == {"b": 2, "c": 1}  # a's line is reused, never b's
    assert bars.overall.n == 100 and bars.overall.total == bars.estimated_total() == round(250 + 250 / 3)
    bars.close()
    # Off a terminal: a progress line at most every line_seconds, rates to 3 significant digits.
    monkeypatch.setattr(executors, "interactive", lambda *a: False)
    piped = executors.ProgressBars(2, quiet=False, line_seconds=0.0)
    capsys.readouterr()
    piped("start", "x", 1000)
    piped("advance", "x", 123)
    line = capsys.readouterr()
    text = line.out + line.err
    assert "progress: 0/2 runs, 123/2000 episodes (" in text and "/s), about" in text
    rate = text.split("episodes (")[1].split("/s")[0]
    assert "e" not in rate and float(rate) == float(f"{float(rate):.3g}")
    from fsseg_bench.console import rate_text
    assert (rate_text(2_851_234), rate_text(12.345), rate_text(0.04567)) == ("2850000", "12.3", "0.0457")


def test_an_experiment_file_runs_what_the_same_flags_run(synthetic_root, tmp_path, capsys):
    import json

    experiment = tmp_path / "exp" / "knn-ablation.toml"
    experiment.parent.mkdir()
    experiment.write_text(f"""# k of the knn baseline
protocol = "synthetic5i"
folds = [0]
shots = [1]
seeds = [1234]
limit = 6
data_root = "{synthetic_root}"

[[methods]]
name = "knn"
label = "knn k=3"
options = {{ k = 3 }}

[[methods]]
name = "support-copy"
""")
    results = tmp_path / "results"
    assert main(["run", "--config", str(experiment), "--results", str(results), "--quiet"]) == 0
    infos = [json.loads(p.read_text()) for p in results.glob("runs/synthetic5i/*/*/run.json")]
    assert sorted((i["method"], i["row_label"], i["method_config"].get("k")) for i in infos) == [
        ("knn", "knn k=3", 3), ("support-copy", None, None)]
    # The same runs by flags are already complete: the file's identity is its effect, not its bytes.
    capsys.readouterr()
    assert main(["run", "--method", "knn", "--option", "k=3", "--label", "knn k=3", "--fold", "0", "--shot", "1",
                 "--seed", "1234", "--limit", "6", "--data-root", str(synthetic_root), "--results", str(results),
                 "--quiet"]) == 0
    assert "0 completed, 1 already complete" in capsys.readouterr().out
    experiment.write_text(experiment.read_text().replace("# k of", "# the k of"))  # a comment: nothing new
    assert main(["run", "--config", str(experiment), "--results", str(results), "--quiet"]) == 0
    assert "0 completed, 2 already complete" in capsys.readouterr().out


@pytest.mark.parametrize("change, fragment", [
    ("methods = 3\n", "expected one or more [[methods]] tables"),
    ("[[methods]]\nname = \"knn\"\ncolour = 1\n", "unknown key methods[1].colour"),
    ("[[methods]]\nname = \"knn\"\noptions = { nope = 1 }\n", "option 'nope' is not one it takes"),
    ("[[methods]]\nname = \"knn\"\n[[methods]]\nname = \"knn\"\n", "appears twice without distinct labels"),
    ("folds = [\"a\"]\n[[methods]]\nname = \"knn\"\n", "key 'folds'"),
])
def test_a_bad_experiment_file_is_one_line_before_any_work(change, fragment, tmp_path, capsys):
    experiment = tmp_path / "exp.toml"
    experiment.write_text('protocol = "synthetic5i"\n' + change)
    results = tmp_path / "results"
    assert main(["run", "--config", str(experiment), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert not results.exists()
    assert main(["run", "--config", str(experiment), "--method", "knn"]) == 2
    assert "--method is set by the experiment file" in capsys.readouterr().err


def test_a_protocol_extends_another_and_is_identified_by_every_file(tmp_path, capsys):
    import hashlib

    from fsseg_bench.protocol import load_protocol

    builtin = load_protocol("synthetic5i")
    child = tmp_path / "short.toml"
    child.write_text('extends = "synthetic5i"\nname = "synthetic5i-short"\nepisodes = 30\n[training]\nlr = 0.002\n')
    short = load_protocol(child)
    assert (short.name, short.episodes, short.training.lr) == ("synthetic5i-short", 30, 0.002)
    assert short.training.episodes == builtin.training.episodes  # [training] merges key by key
    assert (short.image_size, short.seeds, short.dataset) == (builtin.image_size, builtin.seeds, builtin.dataset)
    assert short.episode_sha256 == {}  # the parent's pins belong to the parent's lists
    assert short.file_sha256 not in (hashlib.sha256(child.read_bytes()).hexdigest(), builtin.file_sha256)
    # A parent given by path: editing it changes the child's identity.
    parent = tmp_path / "base.toml"
    parent.write_text((Path(__file__).resolve().parents[1] / "protocols" / "synthetic5i.toml").read_text()
                      .replace('name = "synthetic5i"', 'name = "base"'))
    grandchild = tmp_path / "sub" / "mine.toml"
    grandchild.parent.mkdir()
    grandchild.write_text('extends = "../base.toml"\nname = "mine"\n')
    before = load_protocol(grandchild).file_sha256
    parent.write_text(parent.read_text().replace("episodes = 200", "episodes = 199"))
    assert load_protocol(grandchild).file_sha256 != before and load_protocol(grandchild).episodes == 199
    # Bad chains are one line.
    for text, fragment in (('extends = "a.toml"\nname = "b"\n', "forms a cycle"),
                           ('extends = "synthetic5i"\nepisodes = 3\n', "needs its own 'name'"),
                           ('extends = "nope"\nname = "b"\n', "not a built-in protocol")):
        bad = tmp_path / "a.toml"
        bad.write_text(text)
        assert main(["protocols"]) == 0 and main(["run", "--protocol", str(bad), "--method", "knn"]) == 2
        assert fragment in capsys.readouterr().err


def test_a_run_of_an_extending_protocol_keeps_every_file_of_the_chain(synthetic_root, tmp_path, capsys):
    import shutil

    child = tmp_path / "short.toml"
    child.write_text('extends = "synthetic5i"\nname = "synthetic5i-short"\nepisodes = 8\n'
                     'fbiou_metric = "fbiou_panet_metric"\n')
    results = tmp_path / "results"
    assert main(["run", "--protocol", str(child), "--method", "support-copy", "--data-root", str(synthetic_root),
                 "--results", str(results), "--fold", "0", "--shot", "1", "--seed", "1234", "--quiet"]) == 0
    (manifest,) = (results / "protocols").glob("*.chain.json")
    assert len(list((results / "protocols").glob("*.toml"))) == 2  # the child's bytes and synthetic5i's
    copied = tmp_path / "copy"
    shutil.copytree(results, copied)
    child.unlink()
    capsys.readouterr()
    assert main(["table", "--results", str(copied), "--resamples", "100"]) == 0
    assert "PANet's get_mIoU_binary" in capsys.readouterr().out
    # The same run by the same flags is reused: the identity is the chain's, found again.
    child.write_text('extends = "synthetic5i"\nname = "synthetic5i-short"\nepisodes = 8\n'
                     'fbiou_metric = "fbiou_panet_metric"\n')
    assert main(["run", "--protocol", str(child), "--method", "support-copy", "--data-root", str(synthetic_root),
                 "--results", str(results), "--fold", "0", "--shot", "1", "--seed", "1234", "--quiet"]) == 0
    assert "1 already complete" in capsys.readouterr().out


def test_qualitative_titles_and_row_labels_never_collide_and_panels_share_a_size(two_configs):
    import fsseg_bench as fb
    from fsseg_bench.api import tree_of
    from fsseg_bench.report.plots import qualitative_figure

    records = fb.load_results(two_configs, "synthetic5i")
    fig = qualitative_figure(records, tree_of(records), 1, 3, names={c: f"ellipse-stripes-h{c}-long-name"
                                                                     for c in range(1, 21)})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    grid = fig.axes[0].get_subplotspec().get_gridspec()
    n_rows, n_cols = grid.get_geometry()
    axes = [fig.axes[r * n_cols:(r + 1) * n_cols] for r in range(n_rows)]
    titles = [ax.title.get_window_extent(renderer) for ax in axes[0]]
    assert all(a.x1 <= b.x0 for a, b in zip(titles, titles[1:])), [(t.x0, t.x1) for t in titles]
    labels = [row[0].yaxis.label.get_window_extent(renderer) for row in axes]
    assert all(a.y0 >= b.y1 for a, b in zip(labels, labels[1:]))  # rows top to bottom, no overlap
    sizes = {(round(ax.get_window_extent(renderer).width), round(ax.get_window_extent(renderer).height))
             for row in axes for ax in row}
    assert len(sizes) == 1, sizes
