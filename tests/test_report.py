"""Tables, comparisons and plots from a fixture results tree produced by the real runner."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fsseg_bench.cli import main
from fsseg_bench.errors import InputError
from fsseg_bench.report.summary import summarise
from fsseg_bench.report.tables import csv_table
from fsseg_bench.results import find_runs, load_records, select_runs

METHODS = ["panet-init", "knn", "support-copy"]


@pytest.fixture(scope="module")
def results(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(out),
                 "--method", *METHODS, "--seed", "1234", "1235", "--limit", "12", "--workers", "1", "--quiet",
                 "--save-predictions", "4"]) == 0
    return out


def records_of(results):
    return load_records(select_runs(find_runs(results, "synthetic5i")))


def test_csv_round_trips(results, capsys):
    assert main(["table", "--results", str(results), "--format", "csv", "--resamples", "200"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"fold": str})
    assert list(frame.columns) == ["protocol", "method", "shot", "fold", "metric", "value", "ci_low", "ci_high",
                                   "ci_method", "n_seeds", "n_train_seeds", "n_episodes", "limited", "pretrained",
                                   "other_shot_checkpoint", "n_classes", "fold_classes", "pretraining", "training"]
    assert frame["limited"].all() and set(frame[frame.method == "knn"]["pretrained"]) == {True}  # runs use --limit
    summary = summarise(records_of(results), resamples=200)
    assert len(frame) == len(summary) == 3 * 2 * 5 * 5 * 2  # methods x shots x (4 folds + mean) x metrics x intervals
    assert set(frame["metric"]) == {"miou", "fbiou", "episode_miou", "miou_panet_metric", "fbiou_panet_metric"}
    np.testing.assert_array_equal(frame["value"].to_numpy(), summary["value"].to_numpy())  # full precision
    assert set(frame["fold"]) == {"0", "1", "2", "3", "mean"}
    # Studentised over episodes, or the percentile interval where a cell's resamples cannot differ
    # (all-foreground's FB-IoU background term, say); no training seeds in these runs.
    assert set(frame["ci_method"]) <= {"seeds-t95", "episodes-bootstrap-t95", "episodes-bootstrap95"}
    assert "episodes-bootstrap-t95" in set(frame["ci_method"]) and (frame["n_train_seeds"] == 0).all()
    knn = frame[(frame.method == "knn") & (frame.shot == 1) & (frame.metric == "miou")]
    folds = knn[(knn.fold != "mean") & (knn.ci_method == "seeds-t95")]["value"]
    mean = knn[(knn.fold == "mean") & (knn.ci_method == "seeds-t95")]["value"].iloc[0]
    assert mean == pytest.approx(folds.mean(), abs=1e-9)  # mean = mean of the four folds
    assert (knn["n_seeds"] == 2).all() and (knn[knn.fold == "0"]["n_episodes"] == 24).all()


def test_fold_value_is_the_mean_over_seeds(results):
    records = records_of(results)
    summary = summarise(records, metrics=("miou",), resamples=100)
    fold0 = records[(records.method == "knn") & (records.shot == 1) & (records.fold == 0)]
    by_hand = np.mean([
        np.mean([g[g.class_id == c].fg_intersection.sum() / g[g.class_id == c].fg_union.sum() for c in sorted(g.class_id.unique())])
        for _, g in fold0.groupby("seed")])
    row = summary[(summary.method == "knn") & (summary.shot == 1) & (summary.fold == "0")].iloc[0]
    assert row["value"] == pytest.approx(100 * by_hand, abs=1e-9)


def test_markdown_and_latex_tables(results, capsys):
    assert main(["table", "--results", str(results), "--resamples", "200"]) == 0
    markdown = capsys.readouterr().out
    lines = markdown.splitlines()
    assert lines[0].startswith("| Method | 1-shot Fold-0 |") and "5-shot FB-IoU" in lines[0]
    assert sum(line.startswith("| knn† ") for line in lines) == 1  # limited; the stand-in encoder is pretrained
    assert "| support-copy† |" in markdown  # no encoder: no pretrained mark
    assert "**" in markdown and " ± " in markdown
    assert main(["table", "--results", str(results), "--format", "latex", "--resamples", "200"]) == 0
    latex = capsys.readouterr().out
    assert latex.startswith("\\begin{tabular}") and "\\multicolumn{6}{c}{1-shot}" in latex and "\\textbf{" in latex
    rows = [line for line in latex.splitlines() if line.endswith("\\\\")]
    assert len(rows) == 2 + 3  # two header rows, then one row per method
    assert all(row.count("&") == 12 for row in rows[1:])  # method column + 2 shots x (4 folds, Mean, FB-IoU)
    assert "$\\pm$" in latex


def test_ablation_and_compare(results, capsys):
    assert main(["table", "--results", str(results), "--ablation", "panet-init,knn", "--resamples", "200"]) == 0
    text = capsys.readouterr().out
    assert "Paired difference knn − panet-init" in text and "| 1-shot |" in text and "p=" in text
    assert main(["compare", "knn", "knn", "--results", str(results), "--resamples", "200"]) == 0
    same = capsys.readouterr().out
    assert "1-shot mean of folds  +0.0 [+0.0, +0.0] p=1.000" in same


def test_different_episode_lists_are_never_aggregated(results, tmp_path, capsys):
    import shutil
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    (run,) = [p for p in copy.glob("runs/synthetic5i/knn/fold0-shot1-seed1234-*/run.json")]
    info = json.loads(run.read_text())
    info["episode_list_sha256"] = "f" * 64
    run.write_text(json.dumps(info))
    assert main(["table", "--results", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "were computed on different episode lists" in err and "fold 0 shot 1 seed 1234" in err
    assert "knn/fold0-shot1-seed1234" in err


def test_compare_uses_the_shared_episodes_and_says_so(results, synthetic_root, tmp_path, capsys):
    import shutil
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    assert main(["run", "--data-root", str(synthetic_root), "--results", str(copy), "--method", "all-foreground",
                 "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", "5", "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", "knn", "all-foreground", "--results", str(copy), "--resamples", "200"]) == 0
    out, err = capsys.readouterr()
    assert "compared on the 5 episodes both were run on (1 (fold, shot, seed) runs, 5-5 episodes each" in err
    assert "1-shot fold 0" in out and "fold 1" not in out and "mean of folds" not in out
    # The shared prefix is exactly what a paired comparison of those 5 episodes gives.
    from fsseg_bench.results import load_results
    from fsseg_bench.stats import paired_comparison
    frame = load_results(copy, "synthetic5i", ["knn", "all-foreground"])
    knn = frame[(frame.method == "knn") & (frame.fold == 0) & (frame.shot == 1) & (frame.seed == 1234)
                & (frame["index"] < 5)]
    ones = frame[frame.method == "all-foreground"]
    expected = paired_comparison(knn, ones, resamples=200)
    assert f"{100 * expected.difference:+.1f}" in out


def test_compare_refuses_methods_without_a_shared_episode(results, synthetic_root, tmp_path, capsys):
    import shutil
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    assert main(["run", "--data-root", str(synthetic_root), "--results", str(copy), "--method", "all-foreground",
                 "--fold", "3", "--shot", "5", "--seed", "1236", "--limit", "5", "--workers", "1", "--quiet"]) == 0
    assert main(["compare", "knn", "all-foreground", "--results", str(copy)]) == 2
    assert "were not run on the same episodes" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["per-class", "shots", "episodes", "qualitative"])
def test_each_plot_renders(results, tmp_path, capsys, kind):
    assert main(["plot", kind, "--results", str(results), "--out", str(tmp_path), "--resamples", "100"]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 2 and paths[0].endswith(".png") and paths[1].endswith(".pdf")
    with Image.open(paths[0]) as image:
        width, height = image.size
    assert 400 < width < 1500 and height > 200  # about a column (or two for qualitative) at 200 dpi
    assert open(paths[1], "rb").read(4) == b"%PDF"


def test_method_colours_are_stable_across_subsets():
    from fsseg_bench.report.plots import method_colours
    full = method_colours(["panet", "knn", "support-copy", "my-method"])
    subset = method_colours(["support-copy", "knn"])
    assert subset["knn"] == full["knn"] and subset["support-copy"] == full["support-copy"]
    assert len(set(full.values())) == 4
