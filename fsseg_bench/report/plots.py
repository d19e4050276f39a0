"""Figures (matplotlib + seaborn), each saved as PNG and PDF at paper column width.

One colour per method, the same in every figure: built-in methods take seaborn's colour-blind-safe
palette in a fixed order, every other name the colour its hash picks, never the order plotted.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from PIL import Image  # noqa: E402

from ..stats import DEFAULT_BOOTSTRAP_SEED, percentile_interval  # noqa: E402
from .order import CANONICAL_ORDER  # noqa: E402

COLUMN_WIDTH_IN = 3.4  # a two-column paper's column
PLOT_KINDS = ("per-class", "shots", "episodes", "qualitative")


BUILTIN_COLOURED = (*CANONICAL_ORDER, "hsnet")  # the built-in rows: the palette's first colours, in this order


def method_colours(methods) -> dict[str, tuple]:
    """{method: colour}, the same for a name in every figure whatever else is plotted: built-in
    methods take the palette's first colours; any other name (a plugin, a labelled configuration)
    the colour its sha256 picks among the rest. Two such names that pick the same colour in one
    figure are told apart by moving the later (alphabetically) to the next free colour."""
    import hashlib

    # Grey (the colour-blind palette's 8th) reads as "no method" on the overlays: never used.
    blind = sns.color_palette("colorblind", 10)
    palette = blind[:7] + blind[8:] + sns.color_palette("dark", 10)
    colours, taken = {}, set()
    for method in methods:
        if method in BUILTIN_COLOURED:
            colours[method] = palette[BUILTIN_COLOURED.index(method)]
            taken.add(BUILTIN_COLOURED.index(method))
    rest = range(len(BUILTIN_COLOURED), len(palette))
    for method in sorted(m for m in set(methods) if m not in BUILTIN_COLOURED):
        start = int(hashlib.sha256(method.encode()).hexdigest(), 16) % len(rest)
        index = next((rest[(start + k) % len(rest)] for k in range(len(rest))
                      if rest[(start + k) % len(rest)] not in taken), rest[start])
        taken.add(index)
        colours[method] = palette[index]
    return {m: colours[m] for m in methods}


def _style():
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.8)
    plt.rcParams.update({"pdf.fonttype": 42, "axes.titlesize": 7, "axes.labelsize": 7, "legend.fontsize": 6,
                         "xtick.labelsize": 6, "ytick.labelsize": 6})


def _save(fig, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def class_ious(records: pd.DataFrame, resamples: int = 1000) -> pd.DataFrame:
    """Per (method, shot, class): IoU pooled over the class's episodes (mean over seeds) and a 95%
    bootstrap interval (episodes resampled within seed)."""
    rng = np.random.default_rng(DEFAULT_BOOTSTRAP_SEED)
    rows = []
    for (method, shot, class_id), group in records.groupby(["method", "shot", "class_id"], sort=True):
        per_seed_i, per_seed_u = [], []
        for _, seed_group in group.groupby("seed"):
            inter, union = seed_group["fg_intersection"].to_numpy(float), seed_group["fg_union"].to_numpy(float)
            picks = rng.integers(0, len(inter), size=(resamples, len(inter)))
            per_seed_i.append((inter.sum(), inter[picks].sum(1)))
            per_seed_u.append((union.sum(), union[picks].sum(1)))
        value = np.mean([i / u for (i, _), (u, _) in zip(per_seed_i, per_seed_u)])
        replicates = np.mean([ri / ru for (_, ri), (_, ru) in zip(per_seed_i, per_seed_u)], axis=0)
        low, high = percentile_interval(replicates)
        rows.append({"method": method, "shot": shot, "class_id": class_id, "iou": 100 * value,
                     "low": 100 * low, "high": 100 * high})
    return pd.DataFrame(rows)


def _wrap_name(name: str, width: int = 10) -> str:
    """A class name on lines of at most `width` characters, broken after hyphens, underscores or
    spaces (a longer part stays whole on its own line)."""
    import re

    lines, line = [], ""
    for part in re.findall(r"[^-_ ]+[-_ ]?|[-_ ]", name):
        if line and len(line) + len(part.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += part
    lines.append(line.rstrip())
    return "\n".join(lines)


def tick_boxes(fig, ax) -> list:
    """The drawn extents of an axis' non-empty x tick labels, left to right (what may overlap)."""
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    return sorted(boxes, key=lambda box: box.x0)


def _overlapping(fig, ax, gap: float = 2.0) -> bool:
    boxes = tick_boxes(fig, ax)
    return any(left.x1 + gap > right.x0 for left, right in zip(boxes, boxes[1:]))


def _fit_class_ticks(fig, axes, names_per_axis: list[list[str]], layout) -> None:
    """Class names that never overlap, in one style for every panel: as they are; else wrapped at
    hyphens (the figure grows by the extra lines); else wrapped and smaller; else upright (90
    degrees) and smaller, which fits one name per bar group."""
    width, height = fig.get_size_inches()
    wrapped = [[_wrap_name(n) for n in names] for names in names_per_axis]
    attempts = ((names_per_axis, {}), (wrapped, {}), (wrapped, {"fontsize": 4.5}),
                (names_per_axis, {"fontsize": 4.5, "rotation": 90}))
    for labels_per_axis, style in attempts:
        lines = max((label.count("\n") + 1 for labels in labels_per_axis for label in labels), default=1)
        extra = 0.0 if style.get("rotation") else 0.09 * (lines - 1) * len(axes)
        fig.set_size_inches(width, height + extra)
        for ax, labels in zip(axes, labels_per_axis):
            ax.set_xticks(list(ax.get_xticks()), labels, **style)
        layout()
        fig.canvas.draw()
        if not any(_overlapping(fig, ax) for ax in axes):
            return


def per_class_figure(records: pd.DataFrame, shot: int = 1, methods: list[str] | None = None,
                     names: dict[int, str] | None = None):
    """The per-class figure (`plot_per_class` saves it)."""
    _style()
    data = class_ious(records[records.shot == shot])
    methods = methods or [m for m in CANONICAL_ORDER if m in set(data.method)] + sorted(set(data.method) - set(CANONICAL_ORDER))
    colours = method_colours(methods)
    folds = sorted(records["fold"].unique())
    fig, axes = plt.subplots(len(folds), 1, figsize=(COLUMN_WIDTH_IN, 1.45 * len(folds) + 0.4), sharey=True, squeeze=False)
    width = 0.8 / len(methods)
    for ax, fold in zip(axes[:, 0], folds):
        # The classes the fold's episodes test (any dataset: 5 for PASCAL-5i, 20 for COCO-20i).
        classes = sorted(int(c) for c in records[(records.shot == shot) & (records.fold == fold)]["class_id"].unique())
        for k, method in enumerate(methods):
            rows = data[(data.method == method)].set_index("class_id").reindex(classes)
            x = np.arange(len(classes)) + (k - (len(methods) - 1) / 2) * width
            ax.bar(x, rows["iou"], width, color=colours[method], label=method, linewidth=0)
            ax.errorbar(x, rows["iou"], yerr=[rows["iou"] - rows["low"], rows["high"] - rows["iou"]], fmt="none",
                        ecolor="0.25", elinewidth=0.5, capsize=0)
        ticks = [(names or {}).get(c) or str(c) for c in classes]
        ax.set_xticks(np.arange(len(classes)), ticks)
        ax.set_ylabel(f"fold {fold} IoU (%)")
        ax.grid(axis="x", visible=False)
    axes[0, 0].set_ylim(0, min(100, 10 * np.ceil(data["high"].max() / 10) + 5))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=min(4, len(methods)), loc="upper center", bbox_to_anchor=(0.5, 0.985),
               frameon=False, handlelength=1, columnspacing=0.8)
    fig.suptitle(f"Per-class IoU, {shot}-shot (bars: pooled IoU; whiskers: 95% bootstrap)", fontsize=7, y=0.995)

    def layout():
        # The panels go below the figure legend (under the suptitle), measured as drawn.
        fig.tight_layout()
        fig.canvas.draw()
        if fig.legends:
            legend_bottom = fig.legends[0].get_window_extent().y0 / fig.bbox.height
            fig.subplots_adjust(top=legend_bottom - 0.012)

    # After the layout is known: the labels' drawn extents decide how they are set.
    _fit_class_ticks(fig, list(axes[:, 0]), [[t.get_text() for t in ax.get_xticklabels()] for ax in axes[:, 0]], layout)
    return fig


def plot_per_class(records: pd.DataFrame, out: Path, shot: int = 1, methods: list[str] | None = None,
                   names: dict[int, str] | None = None) -> list[Path]:
    """Grouped bars of per-class IoU with 95% whiskers; one panel per fold, class names on the axis
    (wrapped or turned upright where they would overlap)."""
    return _save(per_class_figure(records, shot, methods, names), out)


def plot_shots(summary: pd.DataFrame, out: Path, methods: list[str] | None = None) -> list[Path]:
    """Mean mIoU at 1 and 5 shots per method, with 95% intervals: the mean of the 4 folds, or the
    fold itself when every row was run on the same single fold. [] (no figure) when neither holds:
    means over different folds are not one axis."""
    _style()
    from .summary import primary

    rows = primary(summary)
    rows = rows[rows.metric == "miou"]
    if (rows.fold == "mean").any():
        rows, axis_label = rows[rows.fold == "mean"], "mIoU, mean of folds (%)"
    elif rows["fold"].nunique() == 1:
        axis_label = f"mIoU, fold {rows['fold'].iloc[0]} (%)"
    else:
        return []
    if rows.empty:
        return []
    methods = methods or [m for m in CANONICAL_ORDER if m in set(rows.method)] + sorted(set(rows.method) - set(CANONICAL_ORDER))
    colours = method_colours(methods)
    shots = sorted(rows["shot"].unique())
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.2))
    for k, method in enumerate(methods):
        mine = rows[rows.method == method].set_index("shot").reindex(shots)
        ax.errorbar(shots, mine["value"], yerr=[mine["value"] - mine["ci_low"], mine["ci_high"] - mine["value"]],
                    color=colours[method], marker="o", markersize=3, linewidth=1, capsize=2, label=method)
    ax.set_xticks(shots, [f"{s}-shot" for s in shots])
    ax.set_xlim(min(shots) - 0.6, max(shots) + 0.6)
    ax.set_ylabel(axis_label)
    ax.legend(ncol=2, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _save(fig, out)


def plot_episodes(records: pd.DataFrame, out: Path, shot: int = 1, methods: list[str] | None = None) -> list[Path]:
    """Distribution of per-episode foreground IoU per method."""
    _style()
    data = records[(records.shot == shot) & (records.fg_union > 0)].copy()
    data["episode IoU (%)"] = 100 * data["fg_intersection"] / data["fg_union"]
    methods = methods or [m for m in CANONICAL_ORDER if m in set(data.method)] + sorted(set(data.method) - set(CANONICAL_ORDER))
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.2))
    sns.violinplot(data=data, y="method", x="episode IoU (%)", order=methods, hue="method", hue_order=methods,
                   palette=method_colours(methods), cut=0, inner="quartile", linewidth=0.5, ax=ax, legend=False)
    ax.set_xlim(0, 100)
    ax.set_ylabel("")
    ax.set_title(f"Per-episode IoU, {shot}-shot (lines: quartiles)")
    fig.tight_layout()
    return _save(fig, out)


def _overlay(image: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    shown = image.astype(float) / 255 * 0.6 + 0.2  # washed out, so the fill stands out
    fg = mask == 1
    shown[fg] = 0.25 * shown[fg] + 0.75 * np.array(colour[:3])
    return shown


def plot_performance_profiles(records: pd.DataFrame, out: Path, shot: int = 1,
                              methods: list[str] | None = None) -> list[Path]:
    """Per method, the fraction of episodes whose IoU exceeds tau (rliable's performance profile)."""
    from ..aggregates import performance_profile

    _style()
    data = records[(records.shot == shot) & (records.fg_union > 0)]
    methods = methods or sorted(data.method.unique())
    colours = method_colours(methods)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 0.75 * COLUMN_WIDTH_IN))
    for method in methods:
        rows = data[data.method == method]
        if rows.empty:
            continue
        tau, above = performance_profile(rows.fg_intersection / rows.fg_union)
        ax.step(tau, above, where="post", color=colours[method], label=method, linewidth=1)
    ax.set_xlabel("IoU threshold τ")
    ax.set_ylabel("fraction of episodes with IoU > τ")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=5, frameon=False)
    ax.set_title(f"Performance profiles, {shot}-shot", fontsize=7)
    fig.tight_layout(pad=0.3)
    return _save(fig, out)


def _square(image: np.ndarray, fill) -> np.ndarray:
    """The image centred on a square canvas (so every panel of a figure has one size)."""
    height, width = image.shape[:2]
    side = max(height, width)
    canvas = np.full((side, side, *image.shape[2:]), fill, dtype=image.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top:top + height, left:left + width] = image
    return canvas


def qualitative_figure(records: pd.DataFrame, tree, shot: int = 1, episodes: int = 3,
                       methods: list[str] | None = None, names: dict[int, str] | None = None,
                       supports: int | None = None):
    """The qualitative figure (`plot_qualitative` saves it): square panels of one size, column
    titles and row labels wrapped so that none touches another."""
    from ..data.voc import read_pair

    _style()
    data = records[records.shot == shot]
    methods = methods or [m for m in CANONICAL_ORDER if m in set(data.method)] + sorted(set(data.method) - set(CANONICAL_ORDER))
    methods = [m for m in methods if m in set(data.method)]
    colours = method_colours(methods)
    # Episodes whose prediction every method saved, from one (fold, seed).
    saved = []
    for (fold, seed), group in data.groupby(["fold", "seed"]):
        dirs = {m: Path(g["run_dir"].iloc[0]) / "predictions" for m, g in group.groupby("method")}
        if set(dirs) != set(methods):
            continue  # a (fold, seed) some row was not run on
        common = set.intersection(*[{int(p.stem) for p in d.glob("*.png")} for d in dirs.values()]) if dirs else set()
        for index in sorted(common):
            saved.append((fold, seed, index, dirs))
        if len(saved) >= episodes:
            break
    saved = saved[:episodes]
    n_supports = min(shot, supports) if supports else shot  # every support of a K-shot episode by default
    n_cols = n_supports + 1 + len(methods)
    panel = 2 * COLUMN_WIDTH_IN / (n_cols + 1)  # one column's width kept for the row labels
    fig, axes = plt.subplots(max(1, len(saved)), n_cols, figsize=(2 * COLUMN_WIDTH_IN, panel * max(1, len(saved)) + 0.45),
                             squeeze=False)
    for row, (fold, seed, index, dirs) in enumerate(saved):
        record = data[(data.fold == fold) & (data.seed == seed) & (data["index"] == index)].iloc[0]
        class_id = int(record["class_id"])
        value = tree.label_value(class_id)  # the class's value in this layout's labels
        query_image, query_label = read_pair(tree, record["query"][0])
        truth = _binary(query_label, value)
        # (title, image, filled mask or None, fill colour, outlined mask)
        panels = []
        for k, support_id in enumerate(list(record["support"])[:n_supports]):
            support_image, support_label = read_pair(tree, support_id)
            title = "support" if n_supports == 1 else f"support {k + 1}"
            panels.append((title, support_image, None, None, _binary(support_label, value)))
        panels.append(("query + truth", query_image, None, None, truth))
        for method in methods:
            prediction = np.array(Image.open(dirs[method] / f"{index:05d}.png"))
            resized = np.array(Image.fromarray(prediction).resize(query_image.shape[1::-1], Image.NEAREST))
            panels.append((method, query_image, resized, colours[method], truth))
        for ax, (title, image, filled, colour, outlined) in zip(axes[row], panels):
            shown = _overlay(image, filled, colour) if filled is not None else image
            ax.imshow(_square(shown, 235 if shown.dtype == np.uint8 else 0.92))
            ax.contour(_square(outlined == 1, False), levels=[0.5], colors=["white"], linewidths=0.7)
            ax.contour(_square(outlined == 1, False), levels=[0.5], colors=["black"], linewidths=0.7, linestyles="dotted")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(_wrap_name(title, 9) if row == 0 else "", fontsize=5)
        label = f"{_wrap_name(str((names or {}).get(class_id) or class_id), 12)}\nfold {fold} ep {index}"
        axes[row, 0].set_ylabel(label, fontsize=5, rotation=0, ha="right", va="center", labelpad=3)
    fig.suptitle("outline: support mask / query ground truth; fill: each method's prediction", fontsize=6)
    fig.tight_layout(pad=0.3, w_pad=0.2, h_pad=0.3)
    return fig


def plot_qualitative(records: pd.DataFrame, out: Path, tree, shot: int = 1, episodes: int = 3,
                     methods: list[str] | None = None, names: dict[int, str] | None = None,
                     supports: int | None = None) -> list[Path]:
    """Support with its mask, query with its ground truth, and each method's saved prediction."""
    return _save(qualitative_figure(records, tree, shot, episodes, methods, names, supports), out)


def _binary(label: np.ndarray, class_id: int) -> np.ndarray:
    mask = (label == class_id).astype(np.uint8)
    mask[label == 255] = 255
    return mask
