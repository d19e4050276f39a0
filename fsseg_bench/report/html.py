"""`fsseg-bench report`: one static page per results folder (index.html + figures/), no server and
no CDN: inline CSS, local PNG figures, a few lines of vanilla JS to sort tables (the page reads
the same without JS).

Per protocol: honesty warnings, the paper table (bold as in `table`), pairwise comparisons (paired
difference, Holm-adjusted p, P(b > a)) as a matrix, IQM over (fold, seed, training seed) runs, figures (per class,
shots, episode distributions, performance profiles, qualitative), and each method's runs with
their provenance. Numbers are those of `table --format csv` (each cell carries its full-precision
value in `data-value`).
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .. import __version__
from ..errors import InputError

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2;cursor:default}td:first-child,th:first-child{text-align:left}
.js table.sortable th{cursor:pointer}.js table.sortable th:after{content:" \\2195";color:#aaa;font-size:.8em}
.best{font-weight:700}.warn{background:#fff6e0;border-left:4px solid #e6a700;padding:.5em 1em;margin:.5em 0}
.ok{background:#eef8ee;border-left:4px solid #3a3;padding:.5em 1em}.note{color:#555;font-size:12px}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figure img{max-width:620px;border:1px solid #eee}
figcaption{font-size:12px;color:#555}details{margin:.3em 0}code{font-size:12px}
.sig{background:#e8f1ff}
"""

# Sort a table by the clicked column (numbers by data-value, else by text); marks the page as JS-enabled.
JS = """
document.documentElement.classList.add('js');
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (header, column) {
    header.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var descending = header.getAttribute('data-order') !== 'desc';
      header.setAttribute('data-order', descending ? 'desc' : 'asc');
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        var u = parseFloat(x.getAttribute('data-value')), v = parseFloat(y.getAttribute('data-value'));
        var order = (!isNaN(u) && !isNaN(v)) ? u - v : x.textContent.localeCompare(y.textContent);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _anchor(*parts) -> str:
    return "-".join("".join(c if c.isalnum() else "_" for c in str(p)) for p in parts)


def honesty_warnings(summary: pd.DataFrame, records: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting a cell; never selects a best seed."""
    warnings = []
    primary_rows = summary[(summary.metric == "miou") & (summary.fold != "mean")]
    single = sorted({(r.method, int(r.shot)) for r in primary_rows.itertuples() if r.n_seeds == 1})
    if single:
        warnings.append("a single episode seed (interval across episodes only): " +
                        ", ".join(f"{m} at {s} shot" for m, s in single))
    for flag, what in (("limited", "run with --limit (not the full protocol)"),
                       ("other_shot_checkpoint", "a checkpoint trained at another shot")):
        names = sorted(set(summary[summary[flag] == True]["method"]))  # noqa: E712
        if names:
            warnings.append(f"{what}: " + ", ".join(names))
    names = sorted(set(summary[summary["pretrained"] == False]["method"]))  # noqa: E712
    if names:
        warnings.append("an encoder without pretrained weights: " + ", ".join(names))
    partial = sorted({(r.method, int(r.shot)) for r in primary_rows.itertuples()
                      if not pd.isna(getattr(r, "fold_classes", float("nan"))) and r.n_classes < r.fold_classes})
    if partial:
        warnings.append("cells averaged over fewer classes than the fold has (marked [n/N]; the original scripts "
                        "would count a missing class as 0): " + ", ".join(f"{m} at {s} shot" for m, s in partial))
    one_model = sorted({(r.method, int(r.shot)) for r in primary_rows.itertuples() if r.n_train_seeds == 1})
    if one_model:
        warnings.append("a single trained model per fold (one training seed; `train --seed S ...` and "
                        "`run --train-seed S ...` add more), so the training lottery is not in the interval: " +
                        ", ".join(f"{m} at {s} shot" for m, s in one_model))
    cells = records.groupby(["method"])[["fold", "shot", "seed"]].apply(
        lambda g: set(map(tuple, g.drop_duplicates().to_numpy())))
    every = set().union(*cells.to_list()) if len(cells) else set()
    for method, present in cells.items():
        missing = sorted(every - present)
        if missing:
            fold, shot, seed = missing[0]
            warnings.append(f"{method}: {len(missing)} of the (fold, shot, seed) runs other rows have are missing "
                            f"(first: fold {fold} shot {shot} seed {seed}); its cells rest on fewer runs")
    return warnings


def _main_table(summary, rows, miou_metric, bold, fbiou_metric="fbiou") -> str:
    from .summary import primary as primary_rows
    from .tables import column_metric, paper_grid

    labels, columns, cells = paper_grid(summary, rows, miou_metric, fbiou_metric)
    primary = primary_rows(summary)
    head = "".join(f"<th>{shot}-shot {('FB-IoU' if f == 'fbiou' else 'Mean' if f == 'mean' else 'Fold-' + f)}</th>"
                   for shot, f in columns)
    body = []
    protocol = summary["protocol"].iloc[0]
    for method, label in zip(rows, labels):
        tds = [f'<td data-value="{_e(label)}"><a href="#{_anchor("runs", protocol, method)}">{_e(label)}</a></td>']
        for column in columns:
            metric, fold = column_metric(column, miou_metric, fbiou_metric)
            match = primary[(primary.method == method) & (primary.shot == column[0]) & (primary.fold == fold)
                            & (primary.metric == metric)]
            if (method, column) not in cells or not len(match):
                tds.append('<td data-value="">–</td>')
                continue
            cls = ' class="best"' if method in (bold or {}).get(column, set()) else ""
            tds.append(f'<td{cls} data-value="{match.iloc[0]["value"]:.17g}" data-metric="{metric}" '
                       f'data-shot="{column[0]}" data-fold="{fold}">{_e(cells[(method, column)][0])}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="sortable main" id="{_anchor("table", protocol)}"><thead><tr><th>Method</th>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table>')


def _pairwise_matrix(pairs: pd.DataFrame, rows: list[str]) -> str:
    from .tables import at_floor

    parts = []
    for shot, group in pairs.groupby("shot"):
        lookup = {(r.a, r.b): r for r in group.itertuples()}
        head = "".join(f"<th>{_e(m)}</th>" for m in rows)
        body = []
        for b in rows:
            tds = [f"<td>{_e(b)}</td>"]
            for a in rows:
                r, sign = (lookup.get((a, b)), 1) if (a, b) in lookup else (lookup.get((b, a)), -1)
                if a == b or r is None:
                    tds.append("<td></td>")
                    continue
                p_better = r.p_b_better if sign == 1 else 1 - r.p_b_better
                cls = ' class="sig"' if r.p_holm < 0.05 else ""
                # At the permutation floor 1/(R+1) the true p is below it: say "<", not a number.
                relation = "&lt;" if at_floor(r.p_value, r.resamples) else "="
                holm = f"p<sub>Holm</sub>{relation}{r.p_holm:.3f}"
                better = "P(row&gt;col): one run" if r.pairs == 1 else f"P(row&gt;col)={p_better:.2f}"
                tds.append(f'<td{cls} data-value="{sign * r.difference:.17g}">{sign * r.difference:+.1f}<br>'
                           f'<span class="note">{holm}<br>{better}</span></td>')
            body.append("<tr>" + "".join(tds) + "</tr>")
        family = group["family"].iloc[0]
        parts.append(f"<h4>{shot}-shot</h4><p class='note'>Row − column, mIoU points on the mean of folds; "
                     f"p<sub>Holm</sub>: sign-flip permutation p, Holm-adjusted over the family ({_e(family)}); "
                     f"P(row&gt;col): probability of improvement over paired (fold, seed, training seed) runs. Shaded: p<sub>Holm</sub> "
                     f"&lt; 0.05.</p><table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    return "".join(parts)


def _training_seeds_table(summary: pd.DataFrame, miou_metric: str) -> str:
    """Per trained method, shot and fold: the spread over trained models beside the spread over
    episode seeds and over episodes, so a reader sees how much of a value is the training lottery."""
    trained = summary[(summary.metric == miou_metric) & (summary.n_train_seeds > 0)]
    if trained.empty:
        return ("<p class='note'>No trained method in this folder: every value is one deterministic model's, "
                "so the only spread is over episodes.</p>")
    kinds = {"train-seeds-t95": "training seeds", "seeds-t95": "episode seeds", "episodes-bootstrap-t95": "episodes",
             "episodes-bootstrap95": "episodes"}
    body = []
    for (method, shot, fold), cell in trained.groupby(["method", "shot", "fold"], sort=False):
        half = {kinds[r.ci_method]: (r.ci_high - r.ci_low) / 2 for r in cell.itertuples() if r.ci_method in kinds}
        texts = "".join(f'<td data-value="{half[k]:.17g}">± {half[k]:.2f}</td>' if k in half and not pd.isna(half[k])
                        else '<td data-value="">–</td>' for k in ("training seeds", "episode seeds", "episodes"))
        first = cell.iloc[0]
        body.append(f'<tr><td>{_e(method)}</td><td data-value="{shot}">{shot}</td><td>{_e(fold)}</td>'
                    f'<td data-value="{first.value:.17g}">{first.value:.1f}</td>'
                    f'<td data-value="{first.n_train_seeds}">{first.n_train_seeds}</td>{texts}</tr>')
    return ("<table class='sortable'><thead><tr><th>Method</th><th>shot</th><th>fold</th><th>value</th>"
            "<th>models</th><th>± across training seeds</th><th>± across episode seeds</th><th>± across episodes</th>"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table><p class='note'>Half-widths of 95% intervals. "
            "Across training seeds: Student t over the trained models' values (each already averaged over its "
            "episodes, so it holds both levels of noise; Welch over folds for the mean). Across episode seeds: "
            "Student t over the episode lists' values. Across episodes: studentised bootstrap with the models held "
            "fixed. When the first is much wider than the others, a difference between methods may be the "
            "training lottery.</p>")


def _iqm_table(iqm: pd.DataFrame) -> str:
    # One run has no spread to resample: its value alone, flagged, rather than a zero-width interval.
    body = "".join(f'<tr><td>{_e(r.method)}</td><td data-value="{r.shot}">{r.shot}</td>'
                   f'<td data-value="{r.iqm:.17g}">{r.iqm:.1f} '
                   + (f'[{r.ci_low:.1f}, {r.ci_high:.1f}]' if r.runs > 1 else '<span class="note">(one run: no interval)</span>')
                   + f'</td><td data-value="{r.runs}">{r.runs}</td></tr>' for r in iqm.itertuples())
    return ("<table class='sortable'><thead><tr><th>Method</th><th>shot</th><th>IQM mIoU [95% stratified bootstrap]"
            f"</th><th>runs</th></tr></thead><tbody>{body}</tbody></table>")


def _runs_section(records: pd.DataFrame, protocol: str, rows: list[str], out: Path) -> str:
    import os

    parts = []
    for method in rows:
        runs = records[records.method == method].drop_duplicates("run_dir")
        items = []
        for run in runs.itertuples():
            info = json.loads((Path(run.run_dir) / "run.json").read_text())
            software = info.get("software", {})
            facts = {
                "fold / shot / seed": f"{info['fold']} / {info['shot']} / {info['seed']}",
                "episodes": f"{info['n_episodes']}" + (f" (--limit {info['limit']})" if info.get("limit") else ""),
                "protocol sha256": info.get("protocol_sha256"), "episode list sha256": info.get("episode_list_sha256"),
                "episode source": json.dumps(info.get("episode_source"), default=str),
                "data sha256": info.get("data_sha256"), "code sha256": info.get("code_sha256"),
                "method config": json.dumps(info.get("method_config"), sort_keys=True, default=str),
                "checkpoint sha256": info.get("checkpoint_sha256"),
                "pretrained": info.get("pretrained"), "other-shot checkpoint": info.get("checkpoint_other_shot"),
                "versions": f"harness {software.get('harness_version')}, python {software.get('python')}, "
                            f"torch {software.get('torch')}, git {(software.get('git') or {}).get('commit')}",
                "device / threads": f"{info.get('device')} / {info.get('threads')}",
                "wall seconds": info.get("wall_seconds"), "finished": info.get("finished"),
            }
            link = os.path.relpath(Path(run.run_dir) / "run.json", out)
            rows_html = "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in facts.items())
            items.append(f"<details><summary>fold {info['fold']} shot {info['shot']} seed {info['seed']} — "
                         f"<a href='{_e(link)}'>run.json</a></summary><table>{rows_html}</table></details>")
        parts.append(f"<h4 id='{_anchor('runs', protocol, method)}'>{_e(method)} ({len(items)} runs)</h4>" + "".join(items))
    return "".join(parts)


def _figures(records: pd.DataFrame, summary: pd.DataFrame, protocol: str, rows: list[str], out: Path) -> str:
    from ..api import class_names_of, tree_of
    from . import plots

    folder = out / "figures"
    names = class_names_of(records)
    made = []
    for shot in sorted(records["shot"].unique()):
        made += [(f"Per-class IoU, {shot}-shot", plots.plot_per_class(records, folder / f"{protocol}-per-class-{shot}shot",
                                                                       int(shot), rows, names))]
        made += [(f"Per-episode IoU, {shot}-shot", plots.plot_episodes(records, folder / f"{protocol}-episodes-{shot}shot",
                                                                        int(shot), rows))]
        made += [(f"Performance profile, {shot}-shot: fraction of episodes with IoU above τ",
                  plots.plot_performance_profiles(records, folder / f"{protocol}-profile-{shot}shot", int(shot), rows))]
    if records["shot"].nunique() > 1:
        shots = plots.plot_shots(summary, folder / f"{protocol}-shots", rows)
        made += [("1-shot vs 5-shot" if shots else "1-shot vs 5-shot left out: it needs the mean of all 4 folds, or "
                  "every row on the same single fold", shots)]
    try:
        tree = tree_of(records)
        for shot in sorted(records["shot"].unique()):
            made += [(f"Qualitative, {shot}-shot", plots.plot_qualitative(records, folder / f"{protocol}-qualitative-{shot}shot",
                                                                          tree, int(shot), 3, rows, names))]
    except InputError as exc:  # the data moved: the rest of the report stands
        made += [(f"Qualitative examples left out: {exc}", [])]
    html_parts = []
    for caption, paths in made:
        png = [p for p in map(Path, paths) if p.suffix == ".png"]
        if png:
            html_parts.append(f"<figure><img src='figures/{_e(png[0].name)}' alt='{_e(caption)}'>"
                              f"<figcaption>{_e(caption)}</figcaption></figure>")
        else:
            html_parts.append(f"<p class='note'>{_e(caption)}</p>")
    return "".join(html_parts)


def _protocol_sections(results_dir: Path) -> list[tuple[str, str, str]]:
    """(name, sha256, title) per protocol version with complete runs: two versions of one name are
    two sections, never one."""
    from ..results import find_runs, protocol_versions, protocols_present

    sections = []
    for protocol in protocols_present(results_dir):
        versions = protocol_versions(find_runs(results_dir, protocol))
        for sha256 in sorted(versions):
            title = protocol if len(versions) == 1 else f"{protocol} (version {sha256[:12]})"
            sections.append((protocol, sha256, title))
    return sections


def write_report(results_dir: str | Path, out: str | Path, resamples: int = 1000) -> Path:
    """Write `out/index.html` (and `out/figures/`) for every protocol with complete runs."""
    from ..aggregates import iqm_table
    from ..comparisons import pairwise, run_values
    from ..results import load_results, recorded_protocol
    from .compare import indistinguishable_from_best
    from .order import row_order
    from .summary import summarise
    from .tables import legend

    results_dir, out = Path(results_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections, toc = [], []
    for protocol, protocol_sha256, title in _protocol_sections(results_dir):
        try:
            records = load_results(results_dir, protocol, protocol_sha256=protocol_sha256, warn=lambda message: None)
        except InputError:
            continue  # a protocol folder without complete runs
        loaded = recorded_protocol(results_dir, protocol, protocol_sha256)  # the folder's copy of its bytes
        if loaded is not None:
            miou_metric, fbiou_metric, description = loaded.miou_metric, loaded.fbiou_metric, loaded.description
        else:  # runs from before protocol copies, their file gone: the pooled metrics
            miou_metric, fbiou_metric, description = "miou", "fbiou", ""
        summary = summarise(records, resamples=resamples)
        rows = row_order(summary["method"].unique())
        cache: dict = {}  # paired comparisons shared by the bold marks and the pairwise matrix
        bold = indistinguishable_from_best(records, summary, rows, miou_metric, resamples, cache=cache,
                                           fbiou_metric=fbiou_metric)
        warnings = honesty_warnings(summary, records)
        warn_html = ("".join(f"<div class='warn'>⚠ {_e(w)}</div>" for w in warnings) if warnings
                     else "<div class='ok'>No cell rests on a single seed or trained model, --limit, an unpretrained encoder or an "
                          "other-shot checkpoint, and no method misses runs.</div>")
        try:
            pairs_html = (_pairwise_matrix(pairwise(records, rows, miou_metric, resamples, cache), rows)
                          if len(rows) > 1 else "")
        except InputError as exc:
            pairs_html = f"<p class='note'>Pairwise comparisons left out: {_e(exc)}</p>"
        values = run_values(records, miou_metric)
        anchor = _anchor("protocol", title)
        toc.append(f"<li><a href='#{anchor}'>{_e(title)}</a></li>")
        sections.append(
            f"<section id='{anchor}'><h2>{_e(title)}</h2><p>{_e(description)}</p>{warn_html}"
            f"<h3>Main table</h3>{_main_table(summary, rows, miou_metric, bold, fbiou_metric)}"
            f"<p class='note'>{_e(legend(summary, miou_metric, True, fbiou_metric))} The best seed is never selected: every value is "
            f"the mean over all seeds run. Click a column header to sort.</p>"
            f"<h3>Training seeds and episode seeds</h3>{_training_seeds_table(summary, miou_metric)}"
            f"<h3>Pairwise comparisons</h3>{pairs_html}"
            f"<h3>Interquartile mean over (fold, seed, training seed) runs</h3>{_iqm_table(iqm_table(values, resamples))}"
            f"<h3>Figures</h3>{_figures(records, summary, protocol, rows, out)}"
            f"<h3>Runs and provenance</h3>{_runs_section(records, protocol, rows, out)}</section>")
    if not sections:
        raise InputError(f"no complete runs under {results_dir / 'runs'} to report on")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>fsseg-bench report</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>"
            f"<h1>fsseg-bench report</h1><p class='note'>Results folder <code>{_e(results_dir.resolve())}</code>; "
            f"generated {generated} by fsseg-bench {__version__}.</p><ul>{''.join(toc)}</ul>{''.join(sections)}"
            f"<script>{JS}</script></body></html>")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
