"""Command-line interface: argument parsing only, one small function per subcommand.

Every subcommand calls a function a Python user can call directly. Bad input (`InputError`)
becomes one line on stderr and exit code 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
import time
from pathlib import Path

from . import __version__
from .errors import InputError, TrainingDiverged
from .paths import DEFAULT_RESULTS_DIR


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", default="synthetic5i", help="built-in protocol name or path to a .toml file")
    parser.add_argument("--data-root", default=None,
                        help="VOC2012 folder or an ancestor of it (default: $FSSEG_BENCH_DATA; synthetic5i: generated)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")


def cmd_synth(args) -> int:
    """A stand-in tree in a benchmark's layout (the writers the tests and CI use)."""
    from .data.registry import standin_layouts

    _positive("--images", args.images)
    start = time.perf_counter()
    where = standin_layouts()[args.layout].write_standin(args.root, args.seed, args.images)
    print(f"{args.layout} stand-in (seed {args.seed}) at {where} [{time.perf_counter() - start:.1f}s]; "
          f"use --data-root {args.root}")
    return 0


def cmd_pretrain_standin(args) -> int:
    """Rebuild the stand-in encoders' shipped weights (`fsseg_bench/pretrain.py`)."""
    from .pretrain import STANDIN_WEIGHTS, PretrainRecipe, pretrain, save_weights

    recipe = PretrainRecipe(**({"images": args.images} if args.images else {}),
                            **({"steps": args.steps} if args.steps else {}))
    args.out.mkdir(parents=True, exist_ok=True)
    for architecture, (name, expected) in STANDIN_WEIGHTS.items():
        report = (lambda step, steps, loss, a=architecture: print(f"{a}: step {step}/{steps} loss {loss:.3f}",
                                                                  flush=True)) if not args.quiet else None
        result = pretrain(recipe, architecture, report)
        sha256 = save_weights(result.state, args.out / name)
        accuracy = ", ".join(f"{head} {100 * a:.1f}%" for head, a in zip(("shape", "texture", "hue"), result.accuracy))
        same = "the shipped file's" if sha256 == expected else f"not the shipped {expected[:12]}"
        print(f"{architecture}: {args.out / name} sha256 {sha256} ({same}); held-out accuracy {accuracy}; "
              f"{result.seconds:.0f} s")
    return 0


def cmd_protocols(args) -> int:
    from .protocol import list_protocols, load_protocol

    for name in list_protocols():
        protocol = load_protocol(name)
        print(f"{name:22s} {protocol.description}")
    return 0


def cmd_episodes(args) -> int:
    from .data.source import class_index, generated_episode_path, original_lists_path, resolve_tree
    from .episodes import check_pin, episodes_to_bytes, generate_episodes, sha256_bytes, write_episode_list
    from .protocol import load_protocol

    if args.import_from is not None:
        return _import_episodes(args)
    protocol = load_protocol(args.protocol)
    tree = resolve_tree(protocol, args.data_root, args.results)
    index = class_index(tree, protocol.split, args.results)
    folds = args.fold or list(protocol.folds)
    shots = args.shot or list(protocol.shots)
    seeds = args.seed or list(protocol.seeds)
    if args.out is not None and len(folds) * len(shots) * len(seeds) > 1:
        raise InputError(f"--out {args.out}: names one file, so give one --fold, --shot and --seed")
    from .sampling import check_original_lists

    check_original_lists(protocol.query_sampling, args.original_lists, protocol.name)
    lists = original_lists_path(protocol, tree, args.original_lists)
    notes = []
    for fold in folds:
        for shot in shots:
            for seed in seeds:
                drawn = generate_episodes(protocol, index, fold, shot, seed, args.episodes, tree, lists)
                if drawn.note and drawn.note not in notes:
                    notes.append(drawn.note)
                    print(f"WARNING: {drawn.note}", file=sys.stderr)
                out = Path(args.out) if args.out else generated_episode_path(args.results, protocol, fold, shot, seed)
                if args.episodes is None:
                    check_pin(protocol, fold, shot, seed, sha256_bytes(episodes_to_bytes(drawn.episodes)), str(out))
                sha256 = write_episode_list(out, drawn.episodes)
                print(f"{sha256}  {out}")
    return 0


def _import_episodes(args) -> int:
    """`episodes --import FORMAT PATH`: an original codebase's dumped list -> a pinned JSONL list."""
    from .data.source import dataset_for
    from .episode_import import import_episodes
    from .episodes import write_episode_list
    from .paths import default_data_root
    from .protocol import episode_key, load_protocol

    fmt, source = args.import_from
    if args.out is None:
        raise InputError("--import: give --out FILE for the JSONL list")
    protocol = load_protocol(args.protocol)
    tree = None
    if args.data_root is not None or (protocol.dataset != "synthetic5i" and default_data_root() is not None):
        from .data.source import resolve_tree

        tree = resolve_tree(protocol, args.data_root, args.results)
    dataset = dataset_for(protocol, tree)
    episodes = import_episodes(fmt, source, args.class_base, dataset.num_classes)
    if tree is not None:
        from .data.source import check_episode_ids, class_index

        check_episode_ids(episodes, class_index(tree, protocol.split, args.results), str(source))
    else:
        print(f"note: ids not checked against data (give --data-root to check them against {protocol.name}'s split)",
              file=sys.stderr)
    sha256 = write_episode_list(args.out, episodes)
    print(f"{sha256}  {args.out}  ({len(episodes)} episodes)")
    classes = {e.class_id for e in episodes}
    folds = [f for f in range(dataset.num_folds) if classes <= set(dataset.fold_test_classes(f))]
    shots = {len(e.support) for e in episodes}
    if len(folds) == 1 and len(shots) == 1 and args.seed is not None and len(args.seed) == 1:
        # The line to pin it in a protocol file, under [episode_sha256].
        print(f'"{episode_key(folds[0], shots.pop(), args.seed[0])}" = "{sha256}"')
    return 0


def cmd_prepare_sbd(args) -> int:
    from .data.sbd import prepare_sbd

    print(prepare_sbd(args.voc, args.sbd).summary())
    return 0


def cmd_prepare_coco(args) -> int:
    from .data.coco_prepare import prepare_coco

    written = prepare_coco(args.coco, tuple(args.split))
    for split, count in written.items():
        print(f"{split}: {count} masks in {Path(args.coco) / 'annotations' / split}")
    return 0


def cmd_prepare_deepglobe(args) -> int:
    from .data.patnet_prepare import prepare_deepglobe

    counts = prepare_deepglobe(args.source, args.out)
    print(f"Deepglobe: {counts['tiles']} tiles, {counts['crops']} crops, {counts['crops_kept']} kept, "
          f"{counts['crop_class_pairs']} (crop, class) pairs written under {Path(args.out) / 'Deepglobe'} "
          f"(per class folder: {counts['per_class_folder']}); recipe.json records them")
    return 0


def cmd_prepare_isic(args) -> int:
    from .data.patnet_prepare import prepare_isic

    if args.resize is not None:
        _positive("--resize", args.resize)
    counts = prepare_isic(args.images, args.masks, args.classes, args.out, args.resize)
    print(f"ISIC: {counts['images']} images by class {counts['per_class']} under {Path(args.out) / 'ISIC'} "
          f"(resize: {args.resize or 'none'}); recipe.json records them")
    return 0


def cmd_prepare_chestxray(args) -> int:
    from .data.patnet_prepare import prepare_chestxray

    counts = prepare_chestxray(args.source, args.out, args.montgomery)
    print(f"Chest X-ray: {counts} under {Path(args.out) / 'LungSegmentation'} (Montgomery: {args.montgomery}); "
          f"recipe.json records them")
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """--option key=value pairs; values parsed as JSON where they can be (numbers, true/false)."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def cmd_methods(args) -> int:
    from .registry import list_methods, load_methods

    load_methods(args.plugin)
    entries = list_methods()
    width = max(len(e.name) for e in entries)
    print(f"{'name':{width}s}  trainable  origin / description")
    for entry in entries:
        print(f"{entry.name:{width}s}  {'yes' if entry.trainable else 'no ':9s}  {entry.description}")
        print(f"{'':{width}s}             [{entry.origin}]")
    return 0


def cmd_train(args) -> int:
    from .console import rate_text
    from .protocol import load_protocol, training_protocol
    from .registry import load_methods
    from .training import train

    load_methods(args.plugin)
    target = load_protocol(args.protocol)
    protocol = training_protocol(target)  # a cross-domain protocol trains under its source protocol
    if protocol is not target:
        print(f"{target.name} trains under {protocol.name} ({protocol.dataset}, {protocol.training.classes} classes): "
              f"its checkpoints serve every protocol that names it", file=sys.stderr)
    options = _parse_options(args.option)
    if args.weights:
        options["weights"] = args.weights
    _positive("--threads", args.threads)
    import torch

    torch.set_num_threads(args.threads)  # torch's default (every core) is slower for small models on a busy machine
    folds = args.fold or list(protocol.folds)
    shots = args.shot or list(protocol.shots)
    train_seeds = args.seed or [protocol.training.seed]
    for seed in train_seeds:
        _positive("--seed", seed, 0)
    cells = [(f, k, s) for s in train_seeds for f in folds for k in shots]
    for position, (fold, shot, seed) in enumerate(cells):
        try:
            result = train(protocol, args.method, fold, shot, data_root=args.data_root, results_dir=args.results,
                           method_options=options, iterations=args.iterations, device=args.device,
                           progress=not args.quiet, train_seed=seed)
        except KeyboardInterrupt:
            print(f"interrupted: {args.method} fold {fold} shot {shot} seed {seed} stopped ({position} of "
                  f"{len(cells)} models finished); its last periodic checkpoint is kept and the same command "
                  f"resumes from it", file=sys.stderr)
            return 130
        resumed = f", resumed at {result.resumed_from}" if result.resumed_from else ""
        print(f"{args.method} fold {fold} shot {shot} seed {seed}: {result.iterations} episodes{resumed}, "
              f"{rate_text(result.episodes_per_second)} episodes/s, loss {sum(result.first_losses) / len(result.first_losses):.3f}"
              f" -> {sum(result.last_losses) / len(result.last_losses):.3f}; {result.checkpoint}")
    return 0


def _method_options(methods: list[str], pairs: list[str], weights: str | None) -> dict[str, tuple]:
    """Per method, the --option pairs (and --weights) its factory accepts; an option no method takes is an error."""
    from .registry import accepted_options

    options = _parse_options(pairs)
    if weights:
        options["weights"] = weights
    per_method = {m: tuple(sorted((k, v) for k, v in options.items() if k in accepted_options(m))) for m in methods}
    for key in options:
        if not any(key in accepted_options(m) for m in methods):
            raise InputError(f"--option {key}: none of {', '.join(methods)} takes it")
    return per_method


def _positive(flag: str, value, minimum=1) -> None:
    if value is not None and value < minimum:
        raise InputError(f"{flag} {value}: expected a number >= {minimum}")


_EXPERIMENT_FLAGS = {"protocol": "--protocol", "method": "--method", "fold": "--fold", "shot": "--shot",
                     "seed": "--seed", "train_seed": "--train-seed", "option": "--option", "checkpoint": "--checkpoint",
                     "label": "--label", "weights": "--weights", "limit": "--limit", "data_root": "--data-root"}


def _apply_experiment(args):
    """Fill the run's selection from `--config`; a flag that the file's keys also set is an error
    (one place says what an experiment runs)."""
    from .experiment import load_experiment

    for dest, flag in _EXPERIMENT_FLAGS.items():
        if getattr(args, dest) not in (None, [], ()):
            raise InputError(f"--config {args.config}: {flag} is set by the experiment file; drop one of them")
    experiment = load_experiment(args.config)
    args.protocol, args.method = experiment.protocol, [m.name for m in experiment.methods]
    args.fold, args.shot, args.seed, args.train_seed = (experiment.folds, experiment.shots, experiment.seeds,
                                                        experiment.train_seeds)
    args.limit, args.data_root = experiment.limit, experiment.data_root
    args.plugin = [*args.plugin, *experiment.plugins]
    return experiment


def _experiment_specs(experiment) -> list[tuple]:
    """(method, options, checkpoint, row label) per [[methods]] entry; an option the method's
    factory does not take is an error naming the entry."""
    from .registry import accepted_options

    specs = []
    for position, entry in enumerate(experiment.methods, 1):
        options = dict(entry.options)
        if entry.weights:
            options["weights"] = entry.weights
        for key in options:
            if key not in accepted_options(entry.name):
                raise InputError(f"{experiment.path}: methods[{position}] ({entry.name}): option {key!r} is not one "
                                 f"it takes ({', '.join(sorted(accepted_options(entry.name))) or 'none'})")
        specs.append((entry.name, tuple(sorted(options.items())), entry.checkpoint, entry.label))
    return specs


def cmd_run(args) -> int:
    import os

    from .protocol import load_protocol
    from .registry import get_entry, load_methods
    from .runner import execute, plan_runs
    from .runner.executors import Interrupted, summary_line

    experiment = _apply_experiment(args) if args.config else None
    if not args.method:
        raise InputError("run: expected --method NAME ... or --config EXPERIMENT.toml")
    args.protocol = args.protocol or "synthetic5i"
    load_methods(args.plugin)
    protocol = load_protocol(args.protocol)
    for method in args.method:
        get_entry(method)
    _positive("--workers", args.workers)
    _positive("--threads", args.threads)
    if args.timeout_per_episode is not None and not args.timeout_per_episode > 0:
        raise InputError(f"--timeout-per-episode {args.timeout_per_episode}: expected a positive number of seconds")
    if args.timeout_per_episode is not None and args.executor == "dask":
        raise InputError("--timeout-per-episode: supported by the local executor only (dask restarts its own workers)")
    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise InputError(f"--device {args.device}: CUDA is not available on this machine")
    checkpoints = {}
    for pair in args.checkpoint:
        method, sep, path = pair.partition("=")
        if not sep or method not in args.method:
            raise InputError(f"--checkpoint {pair!r}: expected METHOD=PATH with METHOD among --method")
        if not Path(path).is_file():
            raise InputError(f"--checkpoint {pair!r}: {path}: checkpoint not found")
        checkpoints[method] = str(Path(path).resolve())
    if args.label is not None and len(args.method) != 1:
        raise InputError(f"--label {args.label!r}: names one configuration, so give one --method")
    if experiment is not None:
        specs = _experiment_specs(experiment)
    else:
        options = _method_options(args.method, args.option, args.weights)
        specs = [(method, options[method], checkpoints.get(method), args.label) for method in args.method]
    if args.episode_list:
        args.fold, args.shot, args.seed = _episode_list_cell(args, protocol)
    requests = []
    for method, method_options, checkpoint, label in specs:
        requests += plan_runs(
            protocol, [method], results_dir=args.results, folds=args.fold, shots=args.shot, seeds=args.seed,
            train_seeds=args.train_seed,
            options=method_options, checkpoint=checkpoint,
            data_root=str(Path(args.data_root).resolve()) if args.data_root else None, limit=args.limit,
            device=args.device, plugins=tuple(str(Path(p).resolve()) for p in args.plugin),
            use_cache=not args.no_cache, cache_mib=args.cache_mib, save_predictions=args.save_predictions,
            feature_store=str(Path(args.feature_store).resolve()) if args.feature_store else None,
            feature_store_gib=args.feature_store_gib, statistics_mib=args.statistics_mib,
            encode_batch=args.encode_batch,
            threads=args.threads, force=args.force, allow_other_shot=args.allow_other_shot, row_label=label,
            original_lists=str(Path(args.original_lists).resolve()) if args.original_lists else None,
            episode_list=str(Path(args.episode_list).resolve()) if args.episode_list else None)
    where = args.results / "runs" / protocol.name
    try:
        outcomes = execute(requests, executor=args.executor, workers=args.workers or os.cpu_count() or 1,
                           scheduler=args.scheduler, quiet=args.quiet, timeout_per_episode=args.timeout_per_episode)
    except Interrupted as interrupted:
        print(summary_line(interrupted.outcomes, str(where)), file=sys.stderr)
        print("interrupted: finished runs are kept; rerun the same command to resume the others", file=sys.stderr)
        return 130
    print(summary_line(outcomes, str(where)))
    if not args.quiet and any(o.status in ("complete", "skipped") for o in outcomes):
        _closing_table(args.results, protocol, args.method)
    failed = [o for o in outcomes if o.status == "failed"]
    # Bad input found inside a run (a corrupt image, say) is still bad input.
    return 2 if any(o.cause == "input" for o in failed) else 1 if failed else 0


def cmd_bench(args) -> int:
    from .runner.bench import bench

    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise InputError(f"--device {args.device}: CUDA is not available on this machine")
    report = bench(method=args.method, backbone=args.backbone, quick=args.quick, threads=args.threads,
                   device=args.device, keep=args.keep, encode_batch=args.encode_batch)
    print(report.table())
    return 0


def cmd_cost(args) -> int:
    from .runner.matrix_cost import measure_cost

    report = measure_cost(args.protocol, args.method, args.data_root, options=_parse_options(args.option),
                          folds=args.fold, shots=args.shot, limit=args.limit, plugins=args.plugin or (), keep=args.keep)
    print(report.table())
    return 0 if report.records_identical else 1


def _protocol_of(args) -> str:
    """--protocol, else the one protocol with runs in the results folder (an error names them all)."""
    from .results import protocols_present

    if args.protocol:
        return args.protocol
    present = protocols_present(args.results)
    if len(present) == 1:
        return present[0]
    if not present:
        raise InputError(f"no runs under {args.results / 'runs'} (run `fsseg-bench run` or `fsseg-bench demo` first, "
                         f"or pass --results DIR)")
    raise InputError(f"runs of several protocols under {args.results / 'runs'} ({', '.join(present)}): "
                     f"pass --protocol NAME")


def _load_selected(results: Path, protocol_name: str, methods: list[str] | None = None, given: bool = True):
    """The records of one protocol version: the given protocol's exact bytes (`--protocol`), or,
    for a protocol inferred from the folder, its only version there (several: an error naming them)."""
    from .protocol import load_protocol
    from .results import load_results

    return load_results(results, load_protocol(protocol_name) if given else protocol_name, methods)


def _episode_list_cell(args, protocol) -> tuple[list[int], list[int], list[int]]:
    """The one (fold, shot, seed) a custom list is run as: fold and shot from the list unless given."""
    from .data.source import dataset_for, resolve_tree
    from .episodes import read_episode_list

    episodes, _ = read_episode_list(args.episode_list)
    dataset = dataset_for(protocol, resolve_tree(protocol, args.data_root, args.results))
    for flag, values in (("--fold", args.fold), ("--shot", args.shot), ("--seed", args.seed)):
        if values is not None and len(values) != 1:
            raise InputError(f"{flag} {' '.join(map(str, values))}: --episode-list is one list, so give one value")
    classes = {e.class_id for e in episodes}
    folds = [f for f in range(dataset.num_folds) if classes <= set(dataset.fold_test_classes(f))]
    shots = sorted({len(e.support) for e in episodes})
    if args.fold is None and len(folds) != 1:
        raise InputError(f"{args.episode_list}: its classes {sorted(classes)} are not those of one fold; "
                         f"expected --fold")
    if args.shot is None and len(shots) != 1:
        raise InputError(f"{args.episode_list}: episodes have {shots} supports; expected one shot")
    return (args.fold or folds, args.shot or shots, args.seed or [protocol.seeds[0]])


def cmd_runs(args) -> int:
    from .registry import load_methods
    from .runner.inventory import format_runs, list_runs

    load_methods(args.plugin)
    protocol = None
    if args.protocol:
        from .protocol import load_protocol
        protocol = load_protocol(args.protocol).name
    statuses = list_runs(args.results, protocol, args.method, check_stale=not args.no_check)
    if not statuses:
        print(f"no runs under {args.results / 'runs'}" + (f" for protocol {protocol}" if protocol else ""))
        return 0
    print(format_runs(statuses), end="")
    counts = {}
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
    stale = sum(bool(s.stale) for s in statuses)
    # A run whose code or data could not be checked is counted as stale, and said so: never "0 stale".
    unchecked = sum(any("cannot check" in why or "no longer registered" in why for why in s.stale) for s in statuses)
    print(f"{len(statuses)} runs: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
          + (f"; {stale} stale for the current code or data" if not args.no_check else
             "; staleness not checked (--no-check)")
          + (f" ({unchecked} of them could not be checked: see the stale column)" if unchecked else ""))
    return 0


def cmd_cross_domain(args) -> int:
    from .api import cross_domain

    print(cross_domain(args.results, args.protocol, args.format, args.resamples), end="")
    return 0


def cmd_table(args) -> int:
    from .report.compare import compare_methods, indistinguishable_from_best
    from .report.order import row_order
    from .report.summary import summarise
    from .report.tables import ablation_table, csv_table, latex_table, markdown_table

    methods = args.method or None
    if args.ablation:
        pair = args.ablation.split(",")
        if len(pair) != 2 or not all(pair):
            raise InputError(f"--ablation {args.ablation!r}: expected BASE,VARIANT (e.g. panet-noalign,panet)")
        methods = pair
    given = bool(args.protocol)
    args.protocol = _protocol_of(args)
    records = _load_selected(args.results, args.protocol, methods, given)
    if args.format == "episodes":  # the records themselves: no summary to compute
        return _episodes_export(records, args.out)
    summary = summarise(records, resamples=args.resamples)
    protocol_miou, protocol_fbiou = _protocol_metrics(records)
    miou_metric, fbiou_metric = args.miou or protocol_miou, args.fbiou or protocol_fbiou
    rows = row_order(summary["method"].unique(), methods)
    bold = None if args.format in ("csv", "json") else indistinguishable_from_best(records, summary, rows, miou_metric,
                                                                         args.resamples, fbiou_metric=fbiou_metric)
    if args.ablation:
        comparisons = compare_methods(records, pair[0], pair[1], miou_metric, resamples=args.resamples)
        text = ablation_table(summary, pair[0], pair[1], comparisons, miou_metric, args.format, bold, fbiou_metric)
    elif args.format == "csv":
        text = csv_table(summary)
    elif args.format == "json":
        from .report.results_json import results_json
        text = results_json(records, summary, miou_metric, fbiou_metric, args.resamples)
    else:
        text = {"markdown": markdown_table, "latex": latex_table}[args.format](summary, rows, miou_metric, bold,
                                                                                fbiou_metric)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


def _episodes_export(records, out: Path | None) -> int:
    """The long per-episode table: CSV on stdout or to --out; Parquet when --out ends in .parquet."""
    from .report.results_json import episodes_frame

    frame = episodes_frame(records)
    if out is not None and Path(out).suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401  (pandas' Parquet engine; optional)
        except ImportError:
            raise InputError(f"--out {out}: Parquet needs pyarrow (pip install pyarrow); or give a .csv path") from None
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
        print(out)
        return 0
    text = frame.to_csv(index=False, float_format="%.17g")
    if out is not None:
        from .runner.store import write_atomic
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(out), text.encode())
        print(out)
        return 0
    print(text, end="")
    return 0


def _closing_table(results: Path, protocol, methods: list[str], resamples: int = 1000) -> None:
    """After `run`: the paper table of the methods it ran, and RESULTS/runs/<protocol>/results.json
    for every row of this protocol version (`table --format json`). Never fails the run."""
    from .console import warn
    from .report.order import row_order
    from .report.results_json import results_json
    from .report.summary import summarise
    from .report.tables import markdown_table
    from .results import load_results
    from .runner.store import write_atomic

    try:
        records = load_results(results, protocol, warn=warn)
        summary = summarise(records, resamples=resamples)
        ran = sorted(set(records.loc[records["method_name"].isin(methods), "method"]))
        print(markdown_table(summary, row_order(ran, None), protocol.miou_metric, None, protocol.fbiou_metric), end="")
        path = Path(results) / "runs" / protocol.name / "results.json"
        write_atomic(path, results_json(records, summary, protocol.miou_metric, protocol.fbiou_metric, resamples).encode())
        print(f"results.json (every row of {protocol.name}): {path}")
    except InputError as exc:
        warn(f"no closing table: {exc}")


def _protocol_metrics(records) -> tuple[str, str]:
    """The (mIoU, FB-IoU) the records' protocol's tables show (from the results folder's copy of
    its bytes); the pooled metrics when no copy or matching file is left."""
    from .api import protocol_of

    loaded = protocol_of(records)
    return (loaded.miou_metric, loaded.fbiou_metric) if loaded is not None else ("miou", "fbiou")


def cmd_compare(args) -> int:
    from .comparisons import pairwise
    from .report.compare import compare_methods, expand_rows
    from .report.tables import format_difference, format_holm, format_p

    if len(args.methods) < 2 or (len(args.methods) > 2 and len(set(args.methods)) != len(args.methods)):
        raise InputError(f"compare {' '.join(args.methods)}: expected two methods, or more without repeats")
    records = _load_selected(args.results, _protocol_of(args), args.methods, bool(args.protocol))
    rows, notes = expand_rows(records, args.methods)
    for note in notes:
        print(note)
    if len(args.methods) == 2 and not notes:
        a, b = args.methods
        results = compare_methods(records, a, b, args.metric, args.resamples)
        print(f"{b} − {a}, {args.metric} in points: difference [95% paired-bootstrap interval] "
              f"p (sign-flip permutation, {args.resamples} resamples; p<1/{args.resamples + 1}: below the "
              f"test's floor)")
        for shot, per_fold in results.items():
            for fold, result in per_fold.items():
                label = "mean of folds" if fold == "mean" else f"fold {fold}"
                print(f"{shot}-shot {label:14s} {format_difference(result)}")
        for row in pairwise(records, [a, b], args.metric, args.resamples).itertuples():
            print(f"{row.shot}-shot P({b} > {a}) over {row.pairs} paired run(s): {_p_better(row)}")
        return 0
    if len(rows) < 2:
        raise InputError(f"compare {' '.join(args.methods)}: these name one row ({rows[0]}); expected two")
    pairs = pairwise(records, rows, args.metric, args.resamples)
    print(f"All pairs, {args.metric} on the mean of folds; b − a in points [95% paired-bootstrap interval]; "
          f"p: sign-flip permutation ({args.resamples} resamples; at its floor, the tail of a normal fitted to the same "
          f"null says how far below); p_holm: Holm-adjusted over the family of "
          f"{len(rows) * (len(rows) - 1) // 2} pairs per shot; P(b > a) over paired (fold, seed, training seed) runs:")
    width = max(len(m) for m in rows)
    for row in pairs.itertuples():
        holm = format_holm(row.p_holm, row.p_value, row.p_resolved, args.resamples)
        print(f"{row.shot}-shot {row.b:>{width}s} − {row.a:<{width}s} {row.difference:+6.1f} "
              f"[{row.ci_low:+.1f}, {row.ci_high:+.1f}] {format_p(row.p_value, args.resamples, p_tail=row.p_tail)} {holm} "
              f"P(b>a)={_p_better(row)}")
    return 0


def _p_better(row) -> str:
    """P(b > a) with its interval; over one paired run it is that run's sign, so no interval."""
    if row.pairs == 1:
        return f"{row.p_b_better:.2f} (one paired run: the sign of its difference, no interval)"
    return f"{row.p_b_better:.2f} [{row.p_b_better_low:.2f}, {row.p_b_better_high:.2f}]"


def cmd_plot(args) -> int:
    from .api import plot

    records = _load_selected(args.results, _protocol_of(args), args.method or None, bool(args.protocol))
    for path in plot(args.kind, records, args.out, args.shot, args.data_root, args.resamples):
        print(path)
    return 0


def cmd_report(args) -> int:
    from .report.html import write_report

    out = args.out or args.results / "report"
    print(write_report(args.results, out, args.resamples))
    return 0


def cmd_demo(args) -> int:
    from .demo import TrainingInterrupted, demo
    from .runner.executors import Interrupted, summary_line

    try:
        report = demo(out=args.out, quick=args.quick, workers=args.workers, quiet=args.quiet, results_dir=args.results)
    except TrainingInterrupted as stopped:
        print(f"demo interrupted while training: {stopped.finished} of {stopped.total} models finished and kept, "
              f"the others cancelled; rerun `fsseg-bench demo` to resume", file=sys.stderr)
        return 130
    except Interrupted as interrupted:
        print(summary_line(interrupted.outcomes, str(args.results / "runs")), file=sys.stderr)
        print("demo interrupted during the runs: finished runs are kept; rerun `fsseg-bench demo` to resume",
              file=sys.stderr)
        return 130
    print(report["table"])
    print(report["ablation"])
    if report["quick"]:
        print("PANet and HSNet vs training-free baselines at 1 shot (informative only with --quick: 2 seeds, 20 episodes):")
    for line in report["check"]:
        print(line)
    print(f"demo {'(quick) ' if report['quick'] else ''}finished in {report['wall_seconds']:.0f} s "
          f"(train {report['train_seconds']:.0f} s, runs {report['run_seconds']:.0f} s, report {report['report_seconds']:.0f} s)")
    print(f"files in {report['out']}: {', '.join(report['files'])}")
    failed = [name for name in ("panet", "hsnet") if not report[f"{name}_beats_training_free"]]
    if failed and not report["quick"]:
        print(f"FAILED: trained {' and '.join(failed)} do(es) not beat every training-free baseline at 1 shot by more "
              "than the interval half-width: the stand-in, its pretrained encoder or the training measures nothing",
              file=sys.stderr)
        return 1
    return 0


def _int_or_range(text: str) -> list[int]:
    """`3`, or an inclusive range `0-3` (folds, shots and seeds are small integers)."""
    match = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer or an inclusive range like 0-3")
    first, last = int(match[1]), int(match[2]) if match[2] is not None else int(match[1])
    if last < first:
        raise argparse.ArgumentTypeError(f"{text!r}: the range ends before it starts")
    return list(range(first, last + 1))


class _Flatten(argparse.Action):
    """`--fold 0 2-3` -> [0, 2, 3]."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [v for group in values for v in group])


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line naming the value and where the help is, exit 2 (not the whole usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="fsseg-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Few-shot segmentation benchmarks you can trust: hashed protocols and episode lists, "
                    "resumable cached runs, tables with confidence intervals.",
        epilog="start with:\n  fsseg-bench demo                 # the main job on the synthetic stand-in\n"
               "  fsseg-bench <command> --help     # each command's options and an example")
    parser.add_argument("--version", action="version", version=f"fsseg-bench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors (anywhere)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a stand-in tree in a benchmark's exact on-disk layout")
    p.add_argument("--root", type=Path, required=True, help="folder to write it into (then --data-root that folder)")
    from .data.registry import standin_layouts

    p.add_argument("--layout", choices=tuple(standin_layouts()), default="voc",
                   help="voc (default): synthetic5i's VOCdevkit/VOC2012; coco: HSNet's COCO2014 layout, 80 classes; "
                        "fss1000: FSS-1000's class folders with HSNet's split files; deepglobe, isic, chestxray: "
                        "PATNet's layouts of the cross-domain sets")
    p.add_argument("--images", type=int, default=None, help="images per split for voc and coco (default: 480/240 "
                                                            "for voc, 800/800 for coco)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (0: the committed episode lists' tree)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("pretrain-standin", help="rebuild the stand-in encoders' pretrained weights (the stand-in's ImageNet)")
    p.add_argument("--out", type=Path, required=True, help="folder for smallcnn-standin.pt and smallcnn-pyramid-standin.pt")
    p.add_argument("--images", type=int, default=None, help="corpus size (default: the shipped recipe's)")
    p.add_argument("--steps", type=int, default=None, help="SGD steps (default: the shipped recipe's)")
    p.add_argument("--quiet", action="store_true", help="no per-step progress lines (the summary line per file stays)")
    p.set_defaults(func=cmd_pretrain_standin)

    p = sub.add_parser("protocols", help="list the built-in protocols")
    p.set_defaults(func=cmd_protocols)

    p = sub.add_parser("episodes", help="generate episode lists (JSONL) and print their sha256")
    _add_data_args(p)
    p.add_argument("--fold", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="folds (default: the protocol's)")
    p.add_argument("--shot", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="shots (default: the protocol's)")
    p.add_argument("--seed", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="seeds (default: the protocol's)")
    p.add_argument("--episodes", type=int, default=None, help="override the protocol's episode count")
    p.add_argument("--out", default=None, help="output file (one fold/shot/seed only)")
    p.add_argument("--original-lists", "--pairs-dir", dest="original_lists", default=None, metavar="PATH",
                   help="folder (or file) of an original codebase's lists for the *-original samplers: PANet's "
                        "class{c}.txt, HSNet's fold{f}.txt pair files, PFENet's val.txt")
    p.add_argument("--import", dest="import_from", nargs=2, metavar=("FORMAT", "PATH"), default=None,
                   help="convert a dumped episode list (jsonl | json | tsv, see the README) into a JSONL list "
                        "written to --out; its ids are checked against the protocol's split when --data-root is given")
    p.add_argument("--class-base", type=int, default=1, choices=(0, 1),
                   help="with --import: class ids in the dump start at 0 (HSNet) or 1 (default)")
    p.set_defaults(func=cmd_episodes)

    p = sub.add_parser("methods", help="list the registered methods")
    p.add_argument("--plugin", action="append", default=[], help="a plugin .py file registering methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="episodic training on a fold's base classes (resumes after a crash)")
    _add_data_args(p)
    p.add_argument("--method", required=True, help="a trainable method (fsseg-bench methods)")
    p.add_argument("--fold", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="folds to train (default: the protocol's)")
    p.add_argument("--shot", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="shots to train at (default: the protocol's)")
    p.add_argument("--seed", type=_int_or_range, nargs="+", action=_Flatten, default=None,
                   help="training seeds, one model each (default: the schedule's seed); "
                        "run --train-seed evaluates them")
    p.add_argument("--iterations", type=int, default=None, help="override the schedule's episode count")
    p.add_argument("--weights", default=None, help="backbone weights (e.g. torchvision VGG16 .pth)")
    p.add_argument("--option", action="append", default=[], help="method option KEY=VALUE")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as each run worker uses)")
    p.add_argument("--plugin", action="append", default=[], help="a .py file that registers methods (repeatable)")
    p.add_argument("--quiet", action="store_true", help="only warnings, errors and the summary line")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="run methods on a protocol; resumable, cached, parallel")
    _add_data_args(p)
    p.set_defaults(protocol=None)  # synthetic5i unless --config names the protocol
    p.add_argument("--method", nargs="+", default=None, help="registered method names (fsseg-bench methods)")
    p.add_argument("--config", type=Path, default=None, metavar="EXPERIMENT.toml",
                   help="an experiment file: protocol, methods with options and labels, folds, shots, seeds "
                        "(instead of those flags)")
    p.add_argument("--fold", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="folds (default: the protocol's)")
    p.add_argument("--shot", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="shots (default: the protocol's)")
    p.add_argument("--seed", type=_int_or_range, nargs="+", action=_Flatten, default=None, help="episode-list seeds (default: the protocol's)")
    p.add_argument("--checkpoint", action="append", default=[], help="METHOD=PATH (default: the latest from train)")
    p.add_argument("--train-seed", type=_int_or_range, nargs="+", action=_Flatten, default=None,
                   help="trained models to evaluate (train --seed), one run each for trainable methods "
                        "(default: the schedule's seed)")
    p.add_argument("--weights", default=None, help="backbone weights for methods that take them")
    p.add_argument("--option", action="append", default=[], help="method option KEY=VALUE")
    p.add_argument("--limit", type=int, default=None, help="first N episodes only (testing; marked in tables)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local worker processes, or a dask cluster (--scheduler)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--scheduler", default=None, help="dask scheduler address, or 'local' for a LocalCluster")
    p.add_argument("--cache-mib", type=float, default=256.0, help="in-memory feature cache per worker, in front of the disk store (MiB)")
    p.add_argument("--no-cache", action="store_true", help="encode every image in every episode (no memory or disk tier)")
    p.add_argument("--feature-store", default=None, metavar="DIR",
                   help="disk feature store shared by workers and later commands (default: RESULTS/cache/features)")
    p.add_argument("--feature-store-gib", type=float, default=50.0,
                   help="cap of the disk feature store; least recently used entries go past it (0: no store)")
    p.add_argument("--statistics-mib", type=float, default=64.0,
                   help="per-worker cache of support statistics, apart from the features (MiB)")
    p.add_argument("--encode-batch", type=int, default=1,
                   help="images encoded together (for GPUs; 1 keeps CPU records bitwise reproducible)")
    p.add_argument("--save-predictions", type=int, default=8, help="predicted masks saved per run")
    p.add_argument("--plugin", action="append", default=[], help="a .py file that registers methods (repeatable)")
    p.add_argument("--quiet", action="store_true", help="only warnings, errors and the summary line")
    p.add_argument("--force", action="store_true", help="recompute the selected runs even when complete")
    p.add_argument("--allow-other-shot", action="store_true",
                   help="use a checkpoint trained at another shot when this shot has none (recorded; marked § in tables)")
    p.add_argument("--label", default=None,
                   help="row label for this configuration in tables (default: the method name, plus what differs)")
    p.add_argument("--timeout-per-episode", type=float, default=None, metavar="SECONDS",
                   help="fail a run whose method takes longer than this per episode (off by default)")
    p.add_argument("--original-lists", "--pairs-dir", dest="original_lists", default=None, metavar="PATH",
                   help="folder (or file) of an original codebase's lists for the *-original samplers: PANet's "
                        "class{c}.txt, HSNet's fold{f}.txt pair files, PFENet's val.txt")
    p.add_argument("--episode-list", default=None, metavar="FILE",
                   help="run this JSONL episode list instead of the protocol's (one fold and shot, inferred from "
                        "the list; its sha256 is recorded and tables mark the row [custom episodes])")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list the runs of a results folder: state, episodes, config, staleness")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")
    p.add_argument("--protocol", default=None, help="only this protocol's runs")
    p.add_argument("--method", nargs="+", default=None, help="only these methods' runs")
    p.add_argument("--plugin", action="append", default=[], help="plugin files whose methods' code to check")
    p.add_argument("--no-check", action="store_true", help="skip the code and data staleness checks")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("bench", help="measure the runner at PANet's real scale: reference loop, floor, full matrix, memory")
    p.add_argument("--method", default="panet-init", help="a frozen-encoder method")
    p.add_argument("--backbone", default="vgg16", help="vgg16 (PANet's encoder) or smallcnn")
    p.add_argument("--quick", action="store_true", help="the 64x64 synthetic stand-in, a few minutes less")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: 1, as each runner worker)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--keep", type=Path, default=None, help="keep the scratch tree, runs and feature store here")
    p.add_argument("--encode-batch", type=int, default=1, help="images encoded together by the runner (GPUs)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("cost", help="encoder passes and CPU time of a frozen-encoder method on a protocol's matrix: "
                                    "the encode-once runner vs the per-episode loop (GF-SAM's)")
    p.add_argument("--protocol", required=True, help="a protocol name or .toml file")
    p.add_argument("--method", required=True, help="a frozen-encoder method")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--data-root", type=Path, default=None, help="the dataset's folder (default: the protocol's)")
    p.add_argument("--fold", type=int, nargs="+", default=None, help="folds (default: all)")
    p.add_argument("--shot", type=int, nargs="+", default=None, help="shots (default: all)")
    p.add_argument("--limit", type=int, default=None, help="the first N episodes of each list")
    p.add_argument("--plugin", action="append", default=None, help="a method plugin file (repeatable)")
    p.add_argument("--keep", type=Path, default=None, help="keep the scratch runs here")
    p.set_defaults(func=cmd_cost)

    from .api import CROSS_DOMAIN

    p = sub.add_parser("cross-domain", help="cross-domain table: a row per method, a column per target dataset and the mean")
    p.add_argument("--protocol", nargs="+", default=list(CROSS_DOMAIN),
                   help=f"target protocols, one column each (default: PATNet's {' '.join(CROSS_DOMAIN)})")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")
    p.add_argument("--format", choices=("markdown", "latex", "csv"), default="markdown", help="output format")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for episode intervals")
    p.set_defaults(func=cmd_cross_domain)

    p = sub.add_parser("table", help="paper-style table (markdown, LaTeX, CSV) or an ablation")
    p.add_argument("--protocol", default=None,
                   help="protocol name or .toml path (default: the one protocol with runs in the results folder)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")
    p.add_argument("--method", nargs="+", default=None, help="rows (default: every method with runs)")
    p.add_argument("--format", choices=("markdown", "latex", "csv", "json", "episodes"), default="markdown",
                   help="output format: a paper table (markdown, latex), every interval (csv), the versioned results "
                        "document (json), or one row per episode (episodes: CSV, or Parquet with --out FILE.parquet)")
    p.add_argument("--ablation", default=None, help="BASE,VARIANT: the two rows and their paired differences")
    p.add_argument("--miou", choices=("miou", "miou_panet_metric"), default=None,
                   help="the mIoU in the fold columns (default: the protocol's miou_metric; CSV always has both)")
    p.add_argument("--fbiou", choices=("fbiou", "fbiou_panet_metric"), default=None,
                   help="the FB-IoU column (default: the protocol's fbiou_metric; CSV always has both)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (at least 1000 for a paper)")
    p.add_argument("--out", default=None, help="also write the table to this file")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("compare", help="paired comparison of methods on the same episodes (P(A>B), Holm)")
    p.add_argument("methods", nargs="+", metavar="METHOD",
                   help="two rows (differences are the second minus the first), or more: every pair, with "
                        "Holm-adjusted p-values")
    p.add_argument("--protocol", default=None,
                   help="protocol name or .toml path (default: the one protocol with runs in the results folder)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")
    p.add_argument("--metric", choices=("miou", "fbiou", "episode_miou", "miou_panet_metric", "fbiou_panet_metric"), default="miou",
                   help="the metric compared")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap and permutation resamples")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plot", help="figures: per-class, shots, episodes, qualitative (PNG + PDF)")
    p.add_argument("kind", choices=("per-class", "shots", "episodes", "qualitative"), help="which figure")
    p.add_argument("--protocol", default=None,
                   help="protocol name or .toml path (default: the one protocol with runs in the results folder)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")
    p.add_argument("--method", nargs="+", default=None, help="rows to plot (default: all)")
    p.add_argument("--shot", type=int, default=1, help="the shot to plot (per-class, episodes, qualitative)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (shots)")
    p.add_argument("--out", default="results/figures", help="output folder (PNG and PDF)")
    p.add_argument("--data-root", default=None,
                   help="qualitative: the data tree to read images from (default: the one the runs recorded)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="a static HTML page of a results folder: tables, comparisons, figures, provenance")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="results folder (default: results/)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RESULTS/report)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap and permutation resamples")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the main job on the synthetic stand-in: train, run everything, report")
    p.add_argument("--quick", action="store_true", help="smoke test: short training, 2 seeds, 20 episodes")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: RESULTS/demo, or RESULTS/demo-quick with --quick)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR,
                   help="results folder: the synthetic tree, checkpoints and runs (default: results/)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="only warnings, errors and the summary")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("prepare-sbd", help="build SegmentationClassAug and trainaug.txt from SBD")
    p.add_argument("--voc", required=True, help="VOC2012 folder or an ancestor of it")
    p.add_argument("--sbd", required=True, help="SBD benchmark_RELEASE folder (or its dataset/)")
    p.set_defaults(func=cmd_prepare_sbd)

    p = sub.add_parser("prepare-coco", help="HSNet-layout class-index PNG masks from COCO 2014 instances files")
    p.add_argument("--coco", required=True, help="the COCO2014 folder: annotations/instances_<split>.json and "
                                                 "<split>/ image folders (masks go to annotations/<split>/)")
    p.add_argument("--split", nargs="+", default=["train2014", "val2014"], help="splits to convert (default: both)")
    p.set_defaults(func=cmd_prepare_coco)

    p = sub.add_parser("prepare-deepglobe", help="PATNet's Deepglobe crops and per-class masks from the land cover tiles")
    p.add_argument("--source", required=True, help="DeepGlobe land cover's folder of <id>_sat.jpg and <id>_mask.png")
    p.add_argument("--out", required=True, help="folder to write Deepglobe/ into (then --data-root that folder)")
    p.set_defaults(func=cmd_prepare_deepglobe)

    p = sub.add_parser("prepare-isic", help="PATNet's ISIC layout: task 1 images and masks sorted by diagnosis")
    p.add_argument("--images", required=True, help="ISIC2018_Task1-2_Training_Input (ISIC_*.jpg)")
    p.add_argument("--masks", required=True, help="ISIC2018_Task1_Training_GroundTruth (<id>_segmentation.png)")
    p.add_argument("--classes", required=True, help="class table: PATNet's data/isic/class_id.csv (ID,Class) or ISIC "
                                                     "2017 part 3 ground truth (image_id,melanoma,seborrheic_keratosis)")
    p.add_argument("--out", required=True, help="folder to write ISIC/ into")
    p.add_argument("--resize", type=int, default=None, help="resize images and masks to N x N (recorded; default: none)")
    p.set_defaults(func=cmd_prepare_isic)

    p = sub.add_parser("prepare-chestxray", help="PATNet's LungSegmentation layout from the lung-mask download")
    p.add_argument("--source", required=True, help="the download's folder holding CXR_png/ and masks/")
    p.add_argument("--out", required=True, help="folder to write LungSegmentation/ into")
    p.add_argument("--montgomery", choices=("include", "exclude"), required=True,
                   help="Montgomery's masks lack '_mask': include renames them, exclude leaves them out (recorded)")
    p.set_defaults(func=cmd_prepare_chestxray)

    for name, subparser in sub.choices.items():
        subparser.formatter_class = argparse.RawDescriptionHelpFormatter
        subparser.epilog = "example:\n  " + EXAMPLES[name]
        # Accepted after the subcommand too; SUPPRESS keeps a `--debug` given before it.
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show tracebacks for input errors")
    return parser


EXAMPLES = {
    "pretrain-standin": "fsseg-bench pretrain-standin --out /tmp/standin-weights   # compare with fsseg_bench/weights/",
    "synth": "fsseg-bench synth --layout coco --root data/coco-standin   # then run --protocol coco20i-hsnet --data-root data/coco-standin",
    "protocols": "fsseg-bench protocols",
    "episodes": "fsseg-bench episodes --protocol pascal5i-hsnet --data-root data/VOCdevkit --pairs-dir hsnet/data/splits/pascal/val",
    "methods": "fsseg-bench methods --plugin mean_colour.py",
    "train": "fsseg-bench train --method panet --fold 0 --shot 1 --seed 1234 7 --threads 1   # two trained models",
    "run": "fsseg-bench run --protocol synthetic5i --method knn panet --fold 0 1 --shot 1 --train-seed 1234 7",
    "runs": "fsseg-bench runs --protocol synthetic5i --method knn",
    "bench": "fsseg-bench bench --quick",
    "cost": "fsseg-bench cost --protocol fss1000-gfsam --method gf-sam --data-root FSS-1000-root --limit 100",
    "table": "fsseg-bench table --protocol synthetic5i --format latex --ablation panet-noalign,panet",
    "compare": "fsseg-bench compare knn panet   # panet - knn per fold and shot; three or more: all pairs, Holm",
    "plot": "fsseg-bench plot per-class --shot 1 --out results/figures",
    "demo": "fsseg-bench demo --quick",
    "report": "fsseg-bench report --results results --out results/report   # then open results/report/index.html",
    "prepare-sbd": "fsseg-bench prepare-sbd --voc data/VOCdevkit/VOC2012 --sbd data/benchmark_RELEASE",
    "prepare-coco": "fsseg-bench prepare-coco --coco data/COCO2014   # pip install 'fsseg-bench[coco]' first",
    "cross-domain": "fsseg-bench cross-domain --results results   # after runs of the four *-patnet protocols",
    "prepare-deepglobe": "fsseg-bench prepare-deepglobe --source downloads/deepglobe/train --out data/cdfss",
    "prepare-isic": "fsseg-bench prepare-isic --images ISIC2018_Task1-2_Training_Input --masks "
                    "ISIC2018_Task1_Training_GroundTruth --classes PATNet/data/isic/class_id.csv --out data/cdfss",
    "prepare-chestxray": "fsseg-bench prepare-chestxray --source downloads/chest-xray --out data/cdfss --montgomery include",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .console import new_invocation

    new_invocation()
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if args.debug:
            raise
        print(f"fsseg-bench: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        # pathlib reports a symlink loop as RuntimeError (ELOOP as OSError elsewhere): a bad path given
        # by the user, not a crash.
        loop = isinstance(exc, OSError) and exc.errno == errno.ELOOP
        if not (loop or str(exc).startswith("Symlink loop")) or args.debug:
            raise
        where = getattr(exc, "filename", None) or str(exc).removeprefix("Symlink loop from ")
        print(f"fsseg-bench: error: {where}: a symbolic-link loop; expected a path that resolves", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        if args.debug:
            raise
        print(f"fsseg-bench: training failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
