"""Issue 12 (in part): probability of improvement, Holm, IQM with its stratified bootstrap, and the
static report page (parsed, and opened in headless Chromium where it is installed)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fsseg_bench.aggregates import iqm, performance_profile, stratified_iqm
from fsseg_bench.comparisons import holm, probability_of_improvement


def test_probability_of_improvement_by_hand():
    # b beats a in pair 3, ties in pair 2, loses in pairs 1 and 4: (1 + 0.5) / 4.
    result = probability_of_improvement([1, 2, 3, 4], [0, 2, 5, 1], resamples=500)
    assert result.probability == 0.375 and result.pairs == 4
    assert 0 <= result.low <= 0.375 <= result.high <= 1
    always = probability_of_improvement([1, 1, 1], [2, 2, 2], resamples=200)
    assert (always.probability, always.low, always.high) == (1.0, 1.0, 1.0)


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 with m = 3: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.2]), [0.5, 0.4])
    np.testing.assert_allclose(holm([0.9, 0.8, 0.2]), [1.0, 1.0, 0.6])  # 3 x 0.2; 2 x 0.8 capped at 1; monotone


def test_iqm_and_performance_profile_by_hand():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # the middle half: 3, 4, 5, 6
    assert iqm([0, 10, 10, 10, 10, 10, 10, 1000]) == 10.0  # robust to one odd run at each end
    tau, above = performance_profile([0.1, 0.5, 0.5, 0.9], [0.0, 0.5, 0.95])
    np.testing.assert_allclose(above, [1.0, 0.25, 0.0])


def test_stratified_iqm_interval_covers_the_truth_about_95_percent():
    """Runs from four folds (strata) with different means; per fold 10 runs ~ Normal. The
    population IQM of the mixture is computed from a very large sample."""
    rng = np.random.default_rng(5)
    means = np.array([30.0, 40.0, 45.0, 55.0])
    truth = iqm(np.concatenate([rng.normal(m, 4.0, 200_000) for m in means]))
    hits, trials = 0, 300
    for trial in range(trials):
        values = np.concatenate([rng.normal(m, 4.0, 10) for m in means])
        strata = np.repeat(np.arange(4), 10)
        result = stratified_iqm(values, strata, resamples=400, rng=np.random.default_rng(trial))
        hits += result.low <= truth <= result.high
    assert 0.88 <= hits / trials <= 0.99, hits / trials


@pytest.fixture(scope="module")
def report_results(tmp_path_factory, synthetic_root):
    import fsseg_bench as fb

    results = tmp_path_factory.mktemp("report")
    outcomes = fb.run("synthetic5i", ["all-foreground", "support-copy", "knn"], folds=[0, 1], shots=[1],
                      seeds=[1234, 1235], limit=20, results=results, data_root=synthetic_root,
                      options={"knn": {"weights": "none"}})  # the random init, so the page must say so
    assert all(o.status == "complete" for o in outcomes)
    return results


class _Cells(HTMLParser):
    """The main table's data cells: (metric, shot, fold, value) from their data attributes."""

    def __init__(self):
        super().__init__()
        self.cells, self.in_main = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.in_main = "main" in (attrs.get("class") or "")
        if tag == "td" and self.in_main and "data-metric" in attrs:
            self.cells.append((attrs["data-metric"], int(attrs["data-shot"]), attrs["data-fold"],
                               float(attrs["data-value"])))

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_main = False


def test_report_values_equal_the_csv_table(report_results, tmp_path):
    from fsseg_bench.cli import main
    from fsseg_bench.report.html import write_report

    page = write_report(report_results, tmp_path / "site", resamples=200)
    text = page.read_text()
    parser = _Cells()
    parser.feed(text)
    assert len(parser.cells) == 3 * 2  # 3 methods x (fold 0, fold 1); no mean with two folds, FB-IoU needs 4
    csv = io.StringIO()
    import contextlib
    with contextlib.redirect_stdout(csv):
        assert main(["table", "--results", str(report_results), "--format", "csv", "--resamples", "200"]) == 0
    frame = pd.read_csv(io.StringIO(csv.getvalue()), dtype={"fold": str})
    primary = frame[frame.ci_method == "seeds-t95"]
    for metric, shot, fold, value in parser.cells:
        match = primary[(primary.metric == metric) & (primary.shot == shot) & (primary.fold == fold)]
        assert any(abs(v - value) < 1e-9 for v in match["value"]), (metric, shot, fold, value)
    # Honesty: --limit, unpretrained encoders; pairwise matrix with Holm; runs with provenance; figures.
    assert "run with --limit" in text and "without pretrained weights: knn" in text
    assert "(3 pairs at 1 shot)" in text and "after Holm's adjustment over every pair" in text
    # Provenance: one line per method, its 2 folds x 2 seeds runs folded beneath, each linking its run.json.
    assert text.count("run.json'>run.json</a>") == 3 * 2 * 2 and "episode list sha256" in text
    assert text.count("<details id='runs-") == 3
    figures = re.findall(r"<img src='figures/([^']+)'", text)
    assert len(figures) >= 4 and all((tmp_path / "site" / "figures" / f).is_file() for f in figures)
    assert "http://" not in text and "https://" not in text, "no CDN, no network"


def test_report_opens_with_protocol_settings_a_headline_and_a_filter(report_results, tmp_path):
    """Before any number: the protocol's name, sha256 and settings; then per shot the best row with its
    interval and the verdict against the runner-up (the pairwise frame's Holm p); a filter box per
    method, and every row of every table keyed by its method so the filter can hide it."""
    import fsseg_bench as fb
    from fsseg_bench.comparisons import pairwise
    from fsseg_bench.report.html import write_report
    from fsseg_bench.report.summary import primary, summarise

    text = write_report(report_results, tmp_path / "site", resamples=200).read_text()
    import hashlib
    sha = hashlib.sha256((Path(__file__).resolve().parents[1] / "protocols" / "synthetic5i.toml").read_bytes()).hexdigest()
    main_table = text.index("<h3>Main table</h3>")
    assert 0 < text.index(sha) < main_table and text.index("episodes per list") < main_table
    assert "<code>64x64</code>" in text and "<code>class-uniform</code>" in text
    records = fb.load_results(report_results, "synthetic5i")
    summary = summarise(records, resamples=200)
    cells = primary(summary)
    fold0 = cells[(cells.metric == "miou") & (cells.fold == "0") & (cells.shot == 1)].sort_values("value", ascending=False)
    best, second = fold0.iloc[0], fold0.iloc[1]
    pairs = pairwise(records, list(fold0.method), resamples=200)
    pair = pairs[((pairs.a == best.method) & (pairs.b == second.method))
                 | ((pairs.b == best.method) & (pairs.a == second.method))].iloc[0]
    verdict = "distinguishable" if pair.p_holm < 0.05 else "not distinguishable"
    headline = (f"1-shot: {best.method} leads with {best.value:.1f} [{best.ci_low:.1f}, {best.ci_high:.1f}] mIoU (fold 0); "
                f"runner-up {second.method} {second.value:.1f}; paired difference {abs(pair.difference):+.1f} points")
    assert headline in text and f"— {verdict} at the 5% level" in text
    assert text.index(headline) < main_table
    for method in ("all-foreground", "support-copy", "knn"):
        assert f"data-filter='{method}'" in text
        assert text.count(f'<tr data-method="{method}">') >= 3  # main table, IQM, pairwise matrix


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="headless Chromium not installed (apt-get install chromium; .ci/run installs it)")
def test_report_opens_in_headless_chromium_without_console_errors(report_results, tmp_path):
    from fsseg_bench.report.html import write_report

    page = write_report(report_results, tmp_path / "site", resamples=200)
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--log-level=0"]
    dom = subprocess.run([*command, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert '<html lang="en" class="js">' in dom.stdout, "the sorting script ran"
    assert dom.stdout.count("<img src=") >= 4 and 'class="sortable main"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*command, "--hide-scrollbars", "--window-size=1300,1600", f"--screenshot={shot}",
                    page.resolve().as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
