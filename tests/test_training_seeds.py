"""Training seeds: one model per seed, runs keyed by it, tables and comparisons that keep the
spread over trained models apart from the spread over episodes."""

import json

import numpy as np
import pytest

from fsseg_bench.checkpoints import read_checkpoint
from fsseg_bench.cli import main
from fsseg_bench.comparisons import pairwise, run_values
from fsseg_bench.report.compare import compare_methods
from fsseg_bench.report.summary import primary, summarise
from fsseg_bench.results import load_results
from fsseg_bench.stats import observed


@pytest.fixture(scope="module")
def seeded(synthetic_root, tmp_path_factory):
    results = tmp_path_factory.mktemp("train-seeds")
    assert main(["train", "--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(results),
                 "--method", "panet", "--fold", "0", "--shot", "1", "--seed", "1234", "7", "--iterations", "6",
                 "--quiet"]) == 0
    assert main(["run", "--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(results),
                 "--method", "panet", "knn", "--fold", "0", "--shot", "1", "--seed", "1234", "1235",
                 "--train-seed", "1234", "7", "--limit", "12", "--workers", "1", "--quiet"]) == 0
    return results


def test_each_training_seed_is_its_own_model_and_checkpoint_folder(seeded):
    default = seeded / "checkpoints/synthetic5i/panet/fold0-shot1/final.pt"
    other = seeded / "checkpoints/synthetic5i/panet/fold0-shot1-train7/final.pt"
    (_, meta_a), (_, meta_b) = read_checkpoint(default), read_checkpoint(other)
    assert (meta_a["train_seed"], meta_b["train_seed"]) == (1234, 7)
    assert meta_a["state_sha256"] != meta_b["state_sha256"]  # another episode order, another model


def test_runs_are_keyed_by_training_seed(seeded):
    runs = sorted((seeded / "runs/synthetic5i/panet").glob("*/run.json"))
    infos = [json.loads(p.read_text()) for p in runs]
    assert sorted((i["seed"], i["train_seed"]) for i in infos) == [(1234, 7), (1234, 1234), (1235, 7), (1235, 1234)]
    assert all(f"-train{i['train_seed']}-" in p.parent.name for p, i in zip(runs, infos))
    knn = [json.loads(p.read_text()) for p in (seeded / "runs/synthetic5i/knn").glob("*/run.json")]
    assert len(knn) == 2 and all("train_seed" not in i for i in knn)  # not trained: one run per cell


def test_fold_value_and_training_seed_interval(seeded):
    records = load_results(seeded, "synthetic5i")
    panet = records[records.method == "panet"]
    assert set(panet["train_seed"]) == {7, 1234} and set(records[records.method == "knn"]["train_seed"]) == {-1}
    per_model = [np.mean([observed(g, "miou") for _, g in m.groupby("seed")]) for _, m in panet.groupby("train_seed")]
    summary = summarise(records, metrics=("miou",), resamples=200)
    rows = summary[(summary.method == "panet") & (summary.fold == "0")].set_index("ci_method")
    assert set(rows.index) == {"seeds-t95", "train-seeds-t95", "episodes-bootstrap-t95"}
    assert rows.loc["train-seeds-t95", "value"] == pytest.approx(100 * np.mean(per_model), abs=1e-9)
    half = 12.706204736174707 * np.std(per_model, ddof=1) / np.sqrt(2) * 100  # t(0.975, 1)
    assert rows.loc["train-seeds-t95", "ci_high"] - rows.loc["train-seeds-t95", "value"] == pytest.approx(half, rel=1e-9)
    assert (rows["n_train_seeds"] == 2).all()
    chosen = primary(summary)
    assert chosen[(chosen.method == "panet") & (chosen.fold == "0")]["ci_method"].tolist() == ["train-seeds-t95"]
    assert chosen[(chosen.method == "knn") & (chosen.fold == "0")]["ci_method"].tolist() == ["seeds-t95"]


def test_an_untrained_method_is_paired_with_every_model(seeded):
    records = load_results(seeded, "synthetic5i")
    result = compare_methods(records, "knn", "panet", "miou", resamples=200)[1][0]
    knn = observed(records[records.method == "knn"], "miou")
    panet = [observed(m, "miou") for _, m in records[records.method == "panet"].groupby("train_seed")]
    assert result.difference == pytest.approx(np.mean(panet) - knn, abs=1e-12)
    pairs = pairwise(records, ["knn", "panet"], "miou", resamples=200)
    assert pairs["pairs"].tolist() == [4]  # 2 episode seeds x 2 models, each against knn on the same episodes
    values = run_values(records, "miou")
    assert len(values[values.method == "panet"]) == 4 and len(values[values.method == "knn"]) == 2


def test_report_shows_the_training_seed_spread(seeded, tmp_path):
    assert main(["report", "--results", str(seeded), "--out", str(tmp_path), "--resamples", "100"]) == 0
    page = (tmp_path / "index.html").read_text()
    assert "Training seeds and episode seeds" in page and "± across training seeds" in page
    assert "a single trained model per fold" not in page  # two models here


def test_bad_training_seed_values(seeded, synthetic_root, capsys):
    code = main(["run", "--protocol", "synthetic5i", "--data-root", str(synthetic_root), "--results", str(seeded),
                 "--method", "panet", "--fold", "0", "--shot", "1", "--train-seed", "99", "--limit", "4", "--quiet"])
    assert code == 2
    assert "train --method panet --fold 0 --shot 1 --seed 99" in capsys.readouterr().err


def test_python_api_trains_one_model_per_training_seed(synthetic_root, tmp_path):
    import fsseg_bench as fb

    results = fb.train("synthetic5i", "panet", folds=[0], shots=[1], seeds=[5, 6], iterations=3, results=tmp_path,
                       data_root=synthetic_root)
    assert [r.checkpoint.parent.name for r in results] == ["fold0-shot1-train5", "fold0-shot1-train6"]
    assert [read_checkpoint(r.checkpoint)[1]["train_seed"] for r in results] == [5, 6]
