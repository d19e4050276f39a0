"""Issue 11: the README's Python example and tour run as written, output fits where it goes,
the CLI helps, tables carry their legend and honest bold, figures show what they should."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

README = Path(__file__).resolve().parent.parent / "README.md"
ESCAPE = re.compile(r"\x1b\[")


def _code_block(marker: str) -> str:
    """The fenced python block of the README whose text contains `marker`."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S):
        if marker in block:
            return block
    raise AssertionError(f"no README code block with {marker!r}")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fsseg_bench", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_readme_python_example_runs_from_a_temporary_directory(tmp_path):
    (tmp_path / "example.py").write_text(_code_block("# fsseg-bench API example"))
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| mean-colour-nb†" in result.stdout and "| all-foreground†" in result.stdout
    assert re.search(r"mean-colour-nb - all-foreground, fold 0: [+-]\d+\.\d points, p=0\.\d{3}", result.stdout)
    assert (tmp_path / "figures" / "per-class-1shot.png").is_file()
    assert not ESCAPE.search(result.stderr), "no progress bars when not on a terminal"


def test_readme_tour(tmp_path):
    """demo --quick, then the tour's plugin commands as the README writes them (the run matched to
    the quick demo's seeds and limit, as the README says)."""
    result = _cli("demo", "--quick", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "results" / "demo-quick" / "table.md").is_file()
    assert (tmp_path / "results" / "demo-quick" / "qualitative-5shot.png").is_file()
    (tmp_path / "mean_colour.py").write_text(_code_block("# mean_colour.py"))
    tour = README.read_text().split("### Register a method and rerun")[1].split("###")[0]
    commands = [line.strip().split("#")[0].split() for line in tour.splitlines() if line.startswith("    fsseg-bench")]
    assert [c[1] for c in commands] == ["methods", "run", "table", "compare"]
    outputs = {}
    for command in commands:
        args = command[1:] + (["--seed", "1234", "1235", "--limit", "20", "--quiet"] if command[1] == "run" else [])
        result = _cli(*args, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        outputs[command[1]] = result.stdout
    assert "mean-colour" in outputs["methods"]
    # Only the new method's runs executed: 4 folds x 2 shots x 2 seeds.
    assert outputs["run"].startswith("16 runs: 16 completed, 0 already complete")
    table = outputs["table"]
    assert "| mean-colour†" in table and "| knn†" in table and "| panet" in table
    assert "mean-colour − knn" in outputs["compare"] and "1-shot mean of folds" in outputs["compare"]


def test_piped_run_and_train_write_plain_lines(tmp_path, synthetic_root):
    results = tmp_path / "results"
    run = _cli("run", "--data-root", synthetic_root, "--results", results, "--method", "knn", "all-foreground",
               "--fold", "0", "--shot", "1", "--seed", "1234", "--limit", "5", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert not ESCAPE.search(run.stderr + run.stdout)
    lines = [line for line in run.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and re.fullmatch(r"\[1/2\] knn fold 0 shot 1 seed 1234 complete: 5 episodes in "
                                            r"[\d.]+ s \([\d.]+/s\)", lines[0]), run.stderr
    # The stand-in's encoder loads its shipped pretraining: nothing to warn about.
    assert "smallcnn" not in run.stderr and "--weights" not in run.stderr
    train = _cli("train", "--data-root", synthetic_root, "--results", results, "--method", "panet",
                 "--fold", "0", "--shot", "1", "--iterations", "12", "--threads", "1")
    assert train.returncode == 0, train.stderr
    assert not ESCAPE.search(train.stderr + train.stdout) and "panet fold 0 shot 1 seed 1234: 12 episodes" in train.stdout


def test_every_option_has_help_and_every_command_an_example():
    from fsseg_bench.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name, subparser in sub.choices.items():
        assert subparser.epilog and "example:\n  fsseg-bench " + name in subparser.epilog, name
        for action in subparser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"


def test_debug_is_accepted_after_the_subcommand(tmp_path):
    quiet = _cli("table", "--protocol", "nope", "--results", tmp_path)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = _cli("table", "--protocol", "nope", "--results", tmp_path, "--debug")
    assert loud.returncode != 0 and "Traceback" in loud.stderr
    before = _cli("--debug", "table", "--protocol", "nope", "--results", tmp_path)
    assert "Traceback" in before.stderr


def test_table_without_protocol_uses_the_one_in_the_folder_and_names_it_otherwise(tmp_path):
    empty = _cli("table", "--results", tmp_path)
    assert empty.returncode == 2 and str(tmp_path / "runs") in empty.stderr
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    several = _cli("compare", "x", "y", "--results", tmp_path)
    assert several.returncode == 2 and "(a, b): pass --protocol NAME" in several.stderr


# --- tables ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tie_records(tmp_path_factory, synthetic_root):
    """all-foreground, an identical copy of it (a tie) and support-copy, fold 0, 1 shot, 2 seeds."""
    import fsseg_bench as fb
    from fsseg_bench.registry import _REGISTRY, get_entry

    if "all-foreground-twin" not in _REGISTRY:
        fb.register_method("all-foreground-twin", description="the same as all-foreground")(
            get_entry("all-foreground").factory)
    results = tmp_path_factory.mktemp("ties")
    outcomes = fb.run("synthetic5i", ["all-foreground", "all-foreground-twin", "support-copy"], folds=[0],
                      shots=[1], seeds=[1234, 1235], limit=30, results=results, data_root=synthetic_root)
    assert all(o.status == "complete" for o in outcomes)
    return fb.load_results(results, "synthetic5i")


def test_bold_marks_the_best_and_what_a_paired_test_cannot_tell_from_it(tie_records):
    from fsseg_bench.report.compare import indistinguishable_from_best
    from fsseg_bench.report.summary import summarise
    from fsseg_bench.report.tables import markdown_table

    summary = summarise(tie_records, resamples=200)
    rows = ["support-copy", "all-foreground-twin", "all-foreground"]
    bold = indistinguishable_from_best(tie_records, summary, rows, resamples=200)
    values = summary[(summary.metric == "miou") & (summary.ci_method == "seeds-t95")].set_index(["fold", "method"])["value"]
    for fold in ("0",):
        column = values.loc[fold]
        # The twins' identical counts tie: both bold or neither, and the column's maximum is bold.
        assert column["all-foreground"] == column["all-foreground-twin"]
        assert ("all-foreground" in bold[(1, fold)]) == ("all-foreground-twin" in bold[(1, fold)])
        assert column.idxmax() in bold[(1, fold)]
    # On these episodes all-foreground beats support-copy clearly (9.8 vs 8.6 in the demo's fold 0):
    # the twins are the bold pair and support-copy is not.
    assert values.loc["0"]["all-foreground"] > values.loc["0"]["support-copy"]
    assert bold[(1, "0")] == {"all-foreground", "all-foreground-twin"}
    table = markdown_table(summary, rows, bold=bold)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:5]] == [
        "support-copy†", "all-foreground-twin†", "all-foreground†"], "rows in the order asked for"
    assert "cannot tell from it at the 5% level" in table


def test_latex_escapes_and_carries_a_legend(tie_records):
    from fsseg_bench.report.summary import summarise
    from fsseg_bench.report.tables import latex_escape, latex_table

    assert latex_escape("a_b & 50% #1 {x} ~^\\ †‡§ ±") == (r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}"
                                                         r"\textasciicircum{}\textbackslash{} $^\dagger$$^\ddagger$"
                                                         r"$^\S$ $\pm$")
    summary = summarise(tie_records, resamples=200)
    summary.loc[summary.method == "support-copy", "method"] = "support_copy (k=5%)"
    text = latex_table(summary)
    assert r"support\_copy (k=5\%)$^\dagger$" in text
    assert r"\footnotesize" in text and r"$^\dagger$: run with -{}-limit" in text and r"$\pm$ is the half-width" in text


def test_ablation_in_every_format(tie_records):
    import io

    import pandas as pd

    from fsseg_bench.report.compare import compare_methods
    from fsseg_bench.report.summary import summarise
    from fsseg_bench.report.tables import ablation_table

    summary = summarise(tie_records, resamples=200)
    comparisons = compare_methods(tie_records, "support-copy", "all-foreground", resamples=200)
    markdown = ablation_table(summary, "support-copy", "all-foreground", comparisons)
    latex = ablation_table(summary, "support-copy", "all-foreground", comparisons, format="latex")
    csv = ablation_table(summary, "support-copy", "all-foreground", comparisons, format="csv")
    assert "Paired difference all-foreground − support-copy" in markdown and "| 1-shot |" in markdown
    assert latex.count(r"\begin{tabular}") == 2 and "1-shot &" in latex and "**" not in latex
    differences = pd.read_csv(io.StringIO(csv.split("\n\n")[1]), dtype={"fold": str})
    row = differences[differences.fold == "0"].iloc[0]
    assert row["difference"] == pytest.approx(100 * comparisons[1][0].difference)
    assert {"base", "variant", "p_value"} <= set(differences.columns)


# --- figures -----------------------------------------------------------------------------------

def test_synthetic_classes_have_their_own_names():
    from fsseg_bench.classes import class_names

    synthetic = class_names("synthetic5i")
    assert synthetic[1] == "ellipse-stripes-h0" and len(set(synthetic.values())) == 20
    assert class_names("pascal-voc")[1] == "aeroplane"


def test_five_shot_qualitative_shows_every_support(tmp_path, synthetic_root, monkeypatch):
    import fsseg_bench as fb
    from fsseg_bench.data.voc import locate_voc
    from fsseg_bench.report import plots

    fb.run("synthetic5i", ["all-foreground", "support-copy"], folds=[0], shots=[5], seeds=[1234], limit=6,
           results=tmp_path, data_root=synthetic_root)
    records = fb.load_results(tmp_path, "synthetic5i")
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig) or [])
    plots.plot_qualitative(records, tmp_path / "q", locate_voc(synthetic_root), shot=5, episodes=2)
    # Titles are wrapped to fit their panel ("support-\ncopy"): compared unwrapped.
    titles = [ax.get_title().replace("-\n", "-").replace("\n", " ") for ax in figures[0].axes[:8]]
    assert titles == [f"support {k}" for k in range(1, 6)] + ["query + truth", "support-copy", "all-foreground"]


def test_a_method_defined_in_python_c_registers_and_runs(tmp_path, synthetic_root):
    code = ("import torch, fsseg_bench as fb\n"
            "@fb.register_method('inline-zero')\n"
            "class Zero(fb.Method):\n"
            "    def predict(self, episode):\n"
            "        return torch.zeros(len(episode.query_images), 2, *episode.query_images.shape[-2:])\n"
            f"outcomes = fb.run('synthetic5i', 'inline-zero', folds=[0], shots=[1], seeds=[1234], limit=3, "
            f"results={str(tmp_path)!r}, data_root={str(synthetic_root)!r})\n"
            "print(outcomes[0].status)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "complete", result.stderr[-2000:]


def test_plot_of_a_shot_without_runs_is_one_line(tmp_path, synthetic_root):
    import fsseg_bench as fb

    fb.run("synthetic5i", "all-foreground", folds=[0], shots=[1], seeds=[1234], limit=3, results=tmp_path,
           data_root=synthetic_root)
    result = _cli("plot", "per-class", "--shot", "2", "--results", tmp_path, "--out", tmp_path / "f")
    assert result.returncode == 2 and result.stderr.strip() == (
        "fsseg-bench: error: --shot 2: no complete runs at 2 shot(s) among these records (shots: 1)")
