"""PATNet's own data code against the harness's episodes (not part of the suite).

    python tests/equivalence/patnet_episodes.py --patnet PATNet [--work DIR]

PATNet is its published repository (a checkout outside this project; nothing of it is copied
here). On stand-in trees in its layouts (`synth --layout deepglobe|isic|chestxray|fss1000`), for
1 and 5 shots, this runs PATNet's test loader as its `test.py` does (`utils.fix_randseed(0)`, then
`FSSDataset.initialize(img_size=400, ...)` and `build_dataloader(benchmark, 30, 0, 0, 'test', shot)`,
iterated in order) and compares every episode's class, query and supports with the list the
harness's protocol (`deepglobe-patnet`, `isic-patnet`, `chestxray-patnet`, `fss1000-patnet`) uses.
It also compares PATNet's query masks (400x400, after its nearest resize) with the harness's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

BENCHMARKS = {"deepglobe": "deepglobe", "isic": "isic", "lung": "chestxray", "fss": "fss1000"}


def harness_episodes(protocol_name: str, root: Path, shot: int, results: Path):
    from fsseg_bench.data.source import episode_list_for, resolve_tree
    from fsseg_bench.protocol import load_protocol

    protocol = load_protocol(protocol_name)
    tree = resolve_tree(protocol, root, results)
    return protocol, tree, episode_list_for(protocol, tree, 0, shot, 0, results).episodes


def harness_id(benchmark: str, path: str) -> str:
    """PATNet's file path -> the harness's image id."""
    path = Path(path)
    if benchmark == "deepglobe":
        return f"{path.parents[2].name}/{path.name.split('.')[0]}"
    if benchmark == "isic":
        return f"{path.parent.name}/{path.name.split('.')[0]}"
    if benchmark == "lung":
        return path.name[:-len("_mask.png")]
    return f"{path.parent.name}/{path.name.split('.')[0]}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patnet", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp())
    from fsseg_bench.data.registry import standin_layouts
    from fsseg_bench.preprocess import ImageLoader

    roots = {}
    for benchmark, layout in BENCHMARKS.items():
        roots[benchmark] = work / layout
        standin_layouts()[layout].write_standin(roots[benchmark])
    # PATNet reads datapath/<Deepglobe|ISIC|LungSegmentation|FSS-1000> and ./data/splits/fss from its cwd.
    sys.path.insert(0, str(args.patnet.resolve()))
    from common import utils  # noqa: E402  (PATNet's)
    from data.dataset import FSSDataset  # noqa: E402  (PATNet's)

    total = equal = masks_equal = masks = 0
    for benchmark, layout in BENCHMARKS.items():
        datapath = roots[benchmark]
        if benchmark == "fss":
            cwd = work / "patnet-cwd"
            (cwd / "data" / "splits" / "fss").mkdir(parents=True, exist_ok=True)
            for split in ("trn", "val", "test"):
                (cwd / "data" / "splits" / "fss" / f"{split}.txt").write_bytes(
                    (datapath / "splits" / "fss" / f"{split}.txt").read_bytes())
            os.chdir(cwd)
        for shot in (1, 5):
            utils.fix_randseed(0)
            FSSDataset.initialize(img_size=400, datapath=str(datapath))
            loader = FSSDataset.build_dataloader(benchmark, 30, 0, 0, "test", shot)
            theirs = []
            for batch in loader:
                for b in range(len(batch["query_name"])):
                    supports = [batch["support_names"][k][b] for k in range(shot)]
                    theirs.append((int(batch["class_id"][b]), batch["query_name"][b], supports,
                                   batch["query_mask"][b].numpy()))
            protocol, tree, ours = harness_episodes(f"{layout}-patnet", datapath, shot, work / "results")
            load = ImageLoader(tree, protocol)
            same = 0
            for mine, (class_index, query, supports, mask) in zip(ours, theirs):
                their_class = class_index + 1 if benchmark != "fss" else tree.class_id(Path(query).parent.name)
                match = (mine.class_id == their_class and mine.query[0] == harness_id(benchmark, query)
                         and list(mine.support) == [harness_id(benchmark, s) for s in supports])
                same += match
                if match and len(ours) and mine.index < 60:  # the query label as each side prepares it
                    label = load.label(mine.query[0]).label.numpy()
                    masks += 1
                    masks_equal += bool(np.array_equal(label, mask.astype(np.uint8)))
            print(f"{benchmark:9s} {shot}-shot: {same}/{len(theirs)} episodes equal "
                  f"({len(ours)} in the harness's list)")
            total += len(theirs)
            equal += same
    print(f"all: {equal}/{total} episodes equal" + (f"; query masks at 400x400 equal {masks_equal}/{masks}"
                                                      if masks else ""))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
