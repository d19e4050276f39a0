"""`fsseg-bench report`: one static page per results folder (index.html + figures/), no server and
no CDN: inline CSS, local PNG figures, a few lines of vanilla JS to sort tables and filter methods
(the page reads whole without JS).

Per protocol, in reading order: the protocol's name, sha256 and settings; the headline (best row
per shot, and whether it can be told from the runner-up); honesty warnings; the paper table (bold
as in `table`); full-width figures grouped by shot; a compact pairwise matrix (Holm-adjusted) with
every pair folded beneath; IQM over (fold, seed, training seed) runs; training-seed spreads; and a
provenance line per method (config, code, weights, checkpoints, time, encoder passes) with its
runs folded beneath. Numbers are those of `table --format csv` (each cell carries its full-precision
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
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1440px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2;cursor:default}td:first-child,th:first-child{text-align:left}
.js table.sortable th{cursor:pointer}.js table.sortable th:after{content:" \\2195";color:#aaa;font-size:.8em}
.best{font-weight:700}.warn{background:#fff6e0;border-left:4px solid #e6a700;padding:.5em 1em;margin:.5em 0}
.ok{background:#eef8ee;border-left:4px solid #3a3;padding:.5em 1em}.note{color:#555;font-size:12px}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:1em;align-items:start}
figure{margin:0}figure.tall{grid-row:span 2}figure.wide,.figs .wide{grid-column:1/-1}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#555}details{margin:.3em 0}code{font-size:12px}
.settings{display:flex;flex-wrap:wrap;gap:.2em 1.4em;background:#f7f7f9;border:1px solid #e3e3e8;padding:.6em 1em;font-size:13px}
.settings .k{color:#666}.headline{font-size:15px;padding:.5em 1em;margin:.4em 0;border-left:4px solid #3a3;background:#eef8ee}
.headline.tie{border-left-color:#888;background:#f3f3f3}
table.matrix td{min-width:3.2em;text-align:center}table.matrix td.up{background:#d7f0d7}table.matrix td.down{background:#f6d8d8}
table.matrix td.tie{color:#666}.pairs{display:flex;flex-wrap:wrap;gap:0 2.5em;align-items:flex-start}table.matrix td.diag{background:#fafafa}
.filter{display:none;background:#f7f7f9;border:1px solid #e3e3e8;padding:.4em 1em;position:sticky;top:0;z-index:2}
table.left td{text-align:left}.js .filter{display:block}.filter label{margin-right:1em;white-space:nowrap}.hidden-method{display:none}
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
// The method filter: an unchecked method's rows and matrix columns are hidden in every table.
function applyFilter() {
  var hidden = {};
  document.querySelectorAll('input[data-filter]').forEach(function (box) { hidden[box.getAttribute('data-filter')] = !box.checked; });
  document.querySelectorAll('[data-method],[data-col-method]').forEach(function (element) {
    var off = hidden[element.getAttribute('data-method')] || hidden[element.getAttribute('data-col-method')];
    element.classList.toggle('hidden-method', !!off);
  });
}
document.querySelectorAll('input[data-filter]').forEach(function (box) { box.addEventListener('change', applyFilter); });
document.querySelectorAll('button[data-filter-all]').forEach(function (button) {
  button.addEventListener('click', function () {
    var on = button.getAttribute('data-filter-all') === '1';
    document.querySelectorAll('input[data-filter]').forEach(function (box) { box.checked = on; });
    applyFilter();
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
        body.append(f'<tr data-method="{_e(method)}">' + "".join(tds) + "</tr>")
    return (f'<table class="sortable main" id="{_anchor("table", protocol)}"><thead><tr><th>Method</th>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table>')


def _holm_text(r) -> str:
    from .tables import format_holm

    return format_holm(r.p_holm, r.p_value, r.p_resolved, r.resamples, "p_Holm")


def _pairwise_view(pairs: pd.DataFrame, rows: list[str]) -> str:
    """Per shot, a compact matrix (row − column in points, shaded by sign where Holm's p < 0.05; the
    test's numbers in each cell's tooltip), then every pair in one sortable table, folded."""
    parts = []
    for shot, group in pairs.groupby("shot"):
        lookup = {(r.a, r.b): r for r in group.itertuples()}
        present = [m for m in rows if any(m in pair for pair in lookup)]
        head = "".join(f'<th data-col-method="{_e(m)}" title="{_e(m)}">{_e(_short_name(m))}</th>' for m in present)
        body = []
        for b in present:
            tds = [f"<td>{_e(b)}</td>"]
            for a in present:
                r, sign = (lookup.get((a, b)), 1) if (a, b) in lookup else (lookup.get((b, a)), -1)
                if a == b or r is None:
                    tds.append(f'<td data-col-method="{_e(a)}" class="diag"></td>')
                    continue
                p_better = r.p_b_better if sign == 1 else 1 - r.p_b_better
                better = ("P(row>col): one paired run" if r.pairs == 1 else
                          f"P(row>col)={p_better:.2f} over {r.pairs} paired runs")
                cls = ("up" if sign * r.difference > 0 else "down") if r.p_holm < 0.05 else "tie"
                low, high = (r.ci_low, r.ci_high) if sign == 1 else (-r.ci_high, -r.ci_low)
                tip = f"{b} − {a}: {sign * r.difference:+.2f} points [{low:+.2f}, {high:+.2f}]; {_holm_text(r)}; {better}"
                tds.append(f'<td data-col-method="{_e(a)}" class="{cls}" data-value="{sign * r.difference:.17g}" '
                           f'title="{_e(tip)}">{sign * r.difference:+.1f}</td>')
            body.append(f'<tr data-method="{_e(b)}">' + "".join(tds) + "</tr>")
        family = group["family"].iloc[0]
        detail = []
        for r in group.sort_values("p_resolved").itertuples():
            one = "one paired run" if r.pairs == 1 else f"{r.p_b_better:.2f} [{r.p_b_better_low:.2f}, {r.p_b_better_high:.2f}]"
            detail.append(f'<tr data-method="{_e(r.a)}" data-col-method="{_e(r.b)}"><td>{_e(r.b)} − {_e(r.a)}</td>'
                          f'<td data-value="{r.difference:.17g}">{r.difference:+.2f}</td>'
                          f'<td>[{r.ci_low:+.2f}, {r.ci_high:+.2f}]</td>'
                          f'<td data-value="{r.p_resolved:.17g}">{_e(_holm_text(r))}</td>'
                          f'<td data-value="{r.p_b_better:.17g}">{one}</td></tr>')
        parts.append(
            f"<div class='pair'><h4>{shot}-shot <span class='note'>({_e(family)})</span></h4>"
            f"<table class='matrix'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<details><summary>Every pair at {shot} shot</summary><table class='sortable'><thead><tr><th>b − a</th>"
            f"<th>difference</th><th>95% interval</th><th>p<sub>Holm</sub></th><th>P(b&gt;a) [95%]</th></tr></thead>"
            f"<tbody>{''.join(detail)}</tbody></table></details></div>")
    resamples = int(pairs["resamples"].iloc[0]) if len(pairs) else 0
    return (f"<p class='note'>Row − column, mIoU points on the mean of folds (or the one fold every row has). Green: "
            f"the row is better, red: worse, at the 5% level after Holm's adjustment over every pair at that shot; "
            f"grey: the test cannot tell them apart. Hover a cell for its interval, p<sub>Holm</sub> and P(row&gt;col); "
            f"every pair is listed under each matrix. p: sign-flip permutation over the shared episodes ({resamples} "
            f"resamples). Where no flip reaches the observed difference the permutation p is only known to be below "
            f"1/(R+1); the tail of a normal fitted to the same null distribution (≈) says how far below, so that "
            f"Holm's adjustment over many pairs still ranks them.</p><div class='pairs'>" + "".join(parts) + "</div>")


def _short_name(method: str) -> str:
    """Column headers of the matrix: long labels (a row with a configuration) cut with an ellipsis;
    the full label is the header's tooltip."""
    return method if len(method) <= 14 else method[:13] + "…"


def _training_seeds_table(summary: pd.DataFrame, miou_metric: str) -> str:
    """Per trained method, shot and fold: the spread over trained models beside the spread over
    episode seeds and over episodes, so a reader sees how much of a value is the training lottery."""
    trained = summary[(summary.metric == miou_metric) & (summary.n_train_seeds > 0)]
    if trained.empty:
        return ("<p class='note'>No trained method in this folder: every value is one deterministic model's, "
                "so the only spread is over episodes.</p>")
    kinds = {"train-seeds-t95": "training seeds", "seeds-t95": "episode seeds", "episodes-bootstrap-t95": "episodes",
             "episodes-bootstrap95": "episodes"}
    mean_rows, fold_rows = [], []
    for (method, shot, fold), cell in trained.groupby(["method", "shot", "fold"], sort=False):
        half = {kinds[r.ci_method]: (r.ci_high - r.ci_low) / 2 for r in cell.itertuples() if r.ci_method in kinds}
        texts = "".join(f'<td data-value="{half[k]:.17g}">± {half[k]:.2f}</td>' if k in half and not pd.isna(half[k])
                        else '<td data-value="">–</td>' for k in ("training seeds", "episode seeds", "episodes"))
        first = cell.iloc[0]
        (mean_rows if fold == "mean" else fold_rows).append(
            f'<tr data-method="{_e(method)}"><td>{_e(method)}</td><td data-value="{shot}">{shot}</td><td>{_e(fold)}</td>'
            f'<td data-value="{first.value:.17g}">{first.value:.1f}</td>'
            f'<td data-value="{first.n_train_seeds}">{first.n_train_seeds}</td>{texts}</tr>')
    head = ("<table class='sortable'><thead><tr><th>Method</th><th>shot</th><th>fold</th><th>value</th>"
            "<th>models</th><th>± across training seeds</th><th>± across episode seeds</th><th>± across episodes</th>"
            "</tr></thead><tbody>")
    # The mean of folds up front, each fold folded away (all of them when there is no mean).
    shown, folded = (mean_rows, fold_rows) if mean_rows else (fold_rows, [])
    more = (f"<details><summary>Each fold ({len(folded)} rows)</summary>{head}{''.join(folded)}</tbody></table></details>"
            if folded else "")
    return (f"{head}{''.join(shown)}</tbody></table>{more}<p class='note'>Half-widths of 95% intervals. "
            "Across training seeds: Student t over the trained models' values (each already averaged over its "
            "episodes, so it holds both levels of noise; Welch over folds for the mean). Across episode seeds: "
            "Student t over the episode lists' values. Across episodes: studentised bootstrap with the models held "
            "fixed. When the first is much wider than the others, a difference between methods may be the "
            "training lottery.</p>")


def _iqm_table(iqm: pd.DataFrame) -> str:
    # Shots apart, best first; one run has no spread to resample: its value alone, flagged, rather
    # than a zero-width interval.
    ordered = iqm.sort_values(["shot", "iqm", "method"], ascending=[True, False, True])
    body = "".join(f'<tr data-method="{_e(r.method)}"><td>{_e(r.method)}</td><td data-value="{r.shot}">{r.shot}</td>'
                   f'<td data-value="{r.iqm:.17g}">{r.iqm:.1f} '
                   + (f'[{r.ci_low:.1f}, {r.ci_high:.1f}]' if r.runs > 1 else '<span class="note">(one run: no interval)</span>')
                   + f'</td><td data-value="{r.runs}">{r.runs}</td></tr>' for r in ordered.itertuples())
    return ("<table class='sortable'><thead><tr><th>Method</th><th>shot</th><th>IQM mIoU [95% stratified bootstrap]"
            f"</th><th>runs</th></tr></thead><tbody>{body}</tbody></table>")


def _sha(value) -> str:
    return "–" if not value else str(value)[:12]


def _cards_table(summary: pd.DataFrame, rows: list[str]) -> str:
    """Per row: what its encoders were pretrained on, what the method was trained on, test-time use of
    class names or target images, and the known overlaps with this benchmark (`cards.py`)."""
    from ..cards import card_warnings

    body = []
    for method in rows:
        cell = summary[summary.method == method]
        if cell.empty:
            continue
        card = json.loads(cell["card"].iloc[0]) if "card" in cell and cell["card"].iloc[0] else None
        if card is None:
            body.append(f'<tr data-method="{_e(method)}"><td>{_e(method)}</td><td colspan="4">unknown (runs from '
                        f'before method cards)</td></tr>')
            continue
        warnings = card_warnings(card, cell["dataset"].iloc[0])
        body.append(f'<tr data-method="{_e(method)}"><td>{_e(method)}</td>'
                    f'<td>{_e(" + ".join(card["pretraining"]) or "no pretrained encoder")}</td>'
                    f'<td>{_e(card["training"])}</td>'
                    f'<td>{"yes" if card["class_names"] else "no"} / {"yes" if card["test_time_adaptation"] else "no"}</td>'
                    f'<td>{"<br>".join("⚠ " + _e(w) for w in warnings) or "none known"}</td></tr>')
    return ("<table class='sortable left'><thead><tr><th>Method</th><th>encoder pretrained on</th><th>trained on</th>"
            "<th>class names / test-time adaptation</th><th>known overlap with this benchmark</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _weights_text(entry: dict) -> str:
    """`weights b3ac3c2d527c` per encoder role (a method may have two encoders); `random init` for an
    encoder without pretrained weights; – for a method without an encoder."""
    pairs = entry.get("weights_sha256") or []
    if pairs and isinstance(pairs[0], (list, tuple)):
        return "; ".join(f"{role} {_sha(sha)}" for role, sha in pairs)
    if entry.get("pretrained") is False:
        return "random init"
    return _sha(pairs[0]) if pairs else "–"


def _provenance(document: dict, protocol: str, rows: list[str], out: Path) -> str:
    """One line per row (config, code, weights, checkpoints, time, encoder passes), then per row its
    runs in one folded table with the hashes that identify each."""
    import os

    by_row = {entry["row"]: entry for entry in document["rows"]}
    summary_rows, folded = [], []
    for method in rows:
        entry = by_row.get(method)
        if entry is None:
            continue
        config = json.dumps(entry.get("config"), sort_keys=True, default=str)
        code = ", ".join(_sha(c) for c in entry["code_sha256"]) or "–"
        checkpoints = entry["checkpoint_sha256"]
        checkpoint_text = "–" if not checkpoints else (
            _sha(checkpoints[0]) if len(checkpoints) == 1 else f"{len(checkpoints)} ({', '.join(map(_sha, checkpoints))})")
        episodes = sum(int(r["n_episodes"] or 0) for r in entry["runs"])
        software = entry.get("software") or {}
        summary_rows.append(
            f'<tr data-method="{_e(method)}"><td><a href="#{_anchor("runs", protocol, method)}">{_e(method)}</a></td>'
            f'<td><code>{_e(config)}</code></td><td><code>{_e(code)}</code></td>'
            f'<td><code>{_e(_weights_text(entry))}</code></td>'
            f'<td><code>{_e(checkpoint_text)}</code></td><td data-value="{len(entry["runs"])}">{len(entry["runs"])}</td>'
            f'<td data-value="{episodes}">{episodes}</td>'
            f'<td data-value="{entry["wall_seconds"]:.17g}">{entry["wall_seconds"]:.1f}</td>'
            f'<td data-value="{entry["encoder_passes"]}">{entry["encoder_passes"]}</td>'
            f'<td>{_e(software.get("harness_version"))} / torch {_e(software.get("torch"))}</td></tr>')
        lines = []
        for run in entry["runs"]:
            link = os.path.relpath(Path(run["run_dir"]) / "run.json", out)
            train = "–" if run["train_seed"] in (None, -1) else run["train_seed"]
            limit = f" (--limit {run['limit']})" if run.get("limit") else ""
            lines.append(f"<tr><td>{run['fold']}</td><td>{run['shot']}</td><td>{run['seed']}</td><td>{train}</td>"
                         f"<td>{run['n_episodes']}{limit}</td><td><code>{_sha(run['episode_list_sha256'])}</code></td>"
                         f"<td><code>{_sha(run['data_sha256'])}</code></td><td><code>{_sha(run['records_sha256'])}</code>"
                         f"</td><td><a href='{_e(link)}'>run.json</a></td></tr>")
        folded.append(
            f"<details id='{_anchor('runs', protocol, method)}' data-method='{_e(method)}'><summary>{_e(method)}: "
            f"{len(lines)} runs</summary><table class='sortable'><thead><tr><th>fold</th><th>shot</th><th>seed</th>"
            f"<th>training seed</th><th>episodes</th><th>episode list sha256</th><th>data sha256</th>"
            f"<th>records sha256</th><th></th></tr></thead><tbody>{''.join(lines)}</tbody></table></details>")
    return ("<table class='sortable left'><thead><tr><th>Method</th><th>config</th><th>code sha256</th>"
            "<th>weights sha256</th><th>checkpoint sha256</th><th>runs</th><th>episodes</th><th>wall s</th>"
            f"<th>encoder passes</th><th>harness / torch</th></tr></thead><tbody>{''.join(summary_rows)}</tbody></table>"
            "<p class='note'>Hashes shortened to 12 hex digits; each run's run.json has them in full, with the "
            "protocol's, the code closure's file list and the software versions. Wall time and encoder passes are "
            "summed over the row's runs (a run served by the feature store passes the encoder fewer times).</p>"
            + "".join(folded))


def _figure_html(caption: str, paths, kind: str = "") -> str:
    """A figure at its own size (paper figures are drawn at print width: never blown up); `kind`
    places it in the shot's grid: "tall" spans two rows, "wide" the whole width."""
    png = [p for p in map(Path, paths) if p.suffix == ".png"]
    if not png:
        return f"<p class='note wide'>{_e(caption)}</p>"
    return (f"<figure class='{kind}'><img src='figures/{_e(png[0].name)}' alt='{_e(caption)}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _figures(records: pd.DataFrame, summary: pd.DataFrame, protocol: str, rows: list[str], out: Path) -> str:
    """Full-width figures grouped by shot (per class, qualitative, episode distributions, performance
    profile), then the figure across shots."""
    from ..api import class_names_of, tree_of
    from . import plots

    folder = out / "figures"
    names = class_names_of(records)
    try:
        tree, no_tree = tree_of(records), None
    except InputError as exc:  # the data moved: the rest of the report stands
        tree, no_tree = None, str(exc)
    groups = []
    for shot in sorted(records["shot"].unique()):
        shot = int(shot)
        made = [_figure_html(f"Per-class IoU, {shot}-shot", plots.plot_per_class(
                    records, folder / f"{protocol}-per-class-{shot}shot", shot, rows, names), "tall"),
                _figure_html(f"Per-episode IoU, {shot}-shot", plots.plot_episodes(
                    records, folder / f"{protocol}-episodes-{shot}shot", shot, rows)),
                _figure_html(f"Performance profile, {shot}-shot: fraction of episodes with IoU above τ",
                             plots.plot_performance_profiles(records, folder / f"{protocol}-profile-{shot}shot", shot, rows))]
        if tree is not None:
            made.append(_figure_html(f"Qualitative, {shot}-shot", plots.plot_qualitative(
                records, folder / f"{protocol}-qualitative-{shot}shot", tree, shot, 3, rows, names), "wide"))
        else:
            made.append(_figure_html(f"Qualitative examples left out: {no_tree}", []))
        groups.append(f"<h4>{shot}-shot</h4><div class='figs'>{''.join(made)}</div>")
    if records["shot"].nunique() > 1:
        shots = plots.plot_shots(summary, folder / f"{protocol}-shots", rows)
        groups.append("<h4>Across shots</h4><div class='figs'>" + _figure_html(
            "1-shot vs 5-shot" if shots else "1-shot vs 5-shot left out: it needs the mean of all 4 folds, or every "
                                             "row on the same single fold", shots) + "</div>")
    return ("<p class='note'>Figures show every row; the method filter applies to the tables only.</p>"
            + "".join(groups))


SETTINGS = (("dataset", "dataset"), ("split", "split"), ("folds", "folds"), ("shots", "shots"),
            ("episodes", "episodes per list"), ("seeds", "episode seeds"), ("query_sampling", "sampler"),
            ("image_size", "input size"), ("resize", "resize"), ("score_at", "scored at"),
            ("query_ignore", "query void pixels"), ("miou_metric", "mIoU"), ("fbiou_metric", "FB-IoU"),
            ("backbone", "default backbone"))


def _protocol_header(title: str, protocol_sha256: str, loaded) -> str:
    """Name, sha256 and the settings that decide what a number means, before any number."""
    facts = [("protocol", f"<b>{_e(title)}</b>"), ("sha256", f"<code>{_e(protocol_sha256)}</code>")]
    if loaded is not None:
        if loaded.description:
            facts.append(("description", _e(loaded.description)))
        for key, label in SETTINGS:
            value = getattr(loaded, key)
            if isinstance(value, tuple):
                value = "x".join(map(str, value)) if key == "image_size" else ", ".join(map(str, value))
            facts.append((label, f"<code>{_e(value)}</code>"))
        if len(loaded.chain) > 1:
            facts.append(("extends", _e(" → ".join(loaded.chain))))
    else:
        facts.append(("settings", "the protocol file is gone and the folder holds no copy: its settings are unknown"))
    cells = "".join(f"<div><span class='k'>{k}</span> {v}</div>" for k, v in facts)
    return f"<div class='settings'>{cells}</div>"


def _headline_html(lines) -> str:
    from .headline import headline_text
    from .tables import format_holm

    if not lines:
        return ""
    items = []
    for line in lines:
        p_text = (format_holm(line.p_holm, line.p_value, line.p_resolved, line.resamples, "p_Holm")
                  if line.distinguishable is not None else "")
        cls = {True: "ok", False: "tie", None: "tie"}[line.distinguishable if line.runner_up else True]
        items.append(f"<div class='headline {cls}'>{_e(headline_text(line, p_text))}</div>")
    return "".join(items)


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


def _method_filter(methods: list[str]) -> str:
    """Checkboxes that hide a method's rows (and matrix columns) in every table; shown only with JS,
    so the page without it reads whole."""
    boxes = "".join(f"<label><input type='checkbox' checked data-filter='{_e(m)}'> {_e(m)}</label>" for m in methods)
    return (f"<div class='filter'><b>Methods shown</b> <button type='button' data-filter-all='1'>all</button> "
            f"<button type='button' data-filter-all='0'>none</button> {boxes}</div>")


def write_report(results_dir: str | Path, out: str | Path, resamples: int = 1000) -> Path:
    """Write `out/index.html` (and `out/figures/`) for every protocol with complete runs."""
    from ..aggregates import iqm_table
    from ..comparisons import pairwise, run_values
    from ..results import load_results, recorded_protocol
    from .compare import indistinguishable_from_best
    from .headline import headlines
    from .order import row_order
    from .results_json import results_document
    from .summary import summarise
    from .tables import legend

    results_dir, out = Path(results_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections, toc, every_method = [], [], []
    for protocol, protocol_sha256, title in _protocol_sections(results_dir):
        try:
            records = load_results(results_dir, protocol, protocol_sha256=protocol_sha256, warn=lambda message: None)
        except InputError:
            continue  # a protocol folder without complete runs
        loaded = recorded_protocol(results_dir, protocol, protocol_sha256)  # the folder's copy of its bytes
        miou_metric, fbiou_metric = (loaded.miou_metric, loaded.fbiou_metric) if loaded is not None else ("miou", "fbiou")
        summary = summarise(records, resamples=resamples)
        rows = row_order(summary["method"].unique())
        every_method += [m for m in rows if m not in every_method]
        cache: dict = {}  # paired comparisons shared by the bold marks, the headline and the pairwise view
        bold = indistinguishable_from_best(records, summary, rows, miou_metric, resamples, cache=cache,
                                           fbiou_metric=fbiou_metric)
        warnings = honesty_warnings(summary, records)
        warn_html = ("".join(f"<div class='warn'>⚠ {_e(w)}</div>" for w in warnings) if warnings
                     else "<div class='ok'>No cell rests on a single seed or trained model, --limit, an unpretrained encoder or an "
                          "other-shot checkpoint, and no method misses runs.</div>")
        pairs = None
        try:
            pairs = pairwise(records, rows, miou_metric, resamples, cache) if len(rows) > 1 else None
            pairs_html = _pairwise_view(pairs, rows) if pairs is not None else "<p class='note'>One row: nothing to compare.</p>"
        except InputError as exc:
            pairs_html = f"<p class='note'>Pairwise comparisons left out: {_e(exc)}</p>"
        values = run_values(records, miou_metric)
        document = results_document(records, summary, miou_metric, fbiou_metric, resamples)
        anchor = _anchor("protocol", title)
        toc.append(f"<li><a href='#{anchor}'>{_e(title)}</a></li>")
        sections.append(
            f"<section id='{anchor}'><h2>{_e(title)}</h2>{_protocol_header(title, protocol_sha256, loaded)}"
            f"{_headline_html(headlines(summary, pairs, miou_metric))}{warn_html}"
            f"<h3>Main table</h3>{_main_table(summary, rows, miou_metric, bold, fbiou_metric)}"
            f"<p class='note'>{_e(legend(summary, miou_metric, True, fbiou_metric))} The best seed is never selected: every value is "
            f"the mean over all seeds run. Click a column header to sort.</p>"
            f"<h3>Method cards</h3>{_cards_table(summary, rows)}"
            f"<h3>Figures</h3>{_figures(records, summary, protocol, rows, out)}"
            f"<h3>Pairwise comparisons</h3>{pairs_html}"
            f"<h3>Interquartile mean over (fold, seed, training seed) runs</h3>{_iqm_table(iqm_table(values, resamples))}"
            f"<h3>Training seeds and episode seeds</h3>{_training_seeds_table(summary, miou_metric)}"
            f"<h3>Provenance</h3>{_provenance(document, protocol, rows, out)}</section>")
    if not sections:
        raise InputError(f"no complete runs under {results_dir / 'runs'} to report on")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>fsseg-bench report</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>"
            f"<h1>fsseg-bench report</h1><p class='note'>Results folder <code>{_e(results_dir.resolve())}</code>; "
            f"generated {generated} by fsseg-bench {__version__}.</p>{_method_filter(every_method)}"
            f"<ul>{''.join(toc)}</ul>{''.join(sections)}<script>{JS}</script></body></html>")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
