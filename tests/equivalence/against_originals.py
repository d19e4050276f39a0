"""Score the harness's runs with the original codebases' own metric code (not part of the suite).

    python tests/equivalence/against_originals.py --panet PATH/TO/PANet --hsnet PATH/TO/hsnet [--work DIR]

PANet and HSNet are their published repositories (git clones; nothing of them is copied here).
On the stand-in trees (VOC format with void borders, COCO format with crowd regions written as
255), one deterministic predictor runs through `fsseg-bench run` as a plugin; this script then
replays each episode of the run's own episode list the way the original test loop prepares the
query (PANet: torchvision's Resize on PIL, nearest for the label; HSNet: PIL image, torch's
nearest for the mask, class binarisation), applies the same predictor, and feeds the original
metric classes: PANet's `util.metric.Metric` (record / get_mIoU / get_mIoU_binary) and HSNet's
`common.evaluation.Evaluator` + `common.logger.AverageMeter` (moved to the CPU). It prints the
originals' numbers beside `fsseg-bench table --format csv`'s, to all digits.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

PREDICTOR = '''
import torch
from fsseg_bench.method import Method
from fsseg_bench.registry import register_method


def brightness_scores(images):
    """Foreground where the normalised query is brighter than average: [Q,3,H,W] -> [Q,2,H,W]."""
    fg = images.mean(dim=1) + 0.25
    return torch.stack([torch.zeros_like(fg), fg], dim=1)


@register_method("brightness", description="foreground where the query is bright (a fixed predictor)")
class Brightness(Method):
    def predict(self, episode):
        return brightness_scores(episode.query_images)
'''

PANET_SIDE = 8  # PANet's is 417; small here so that queries lose their class in the resize
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def brightness(tensor: torch.Tensor) -> np.ndarray:
    """The plugin's rule on one normalised [3,H,W] image: foreground where fg > bg (ties background)."""
    fg = tensor[None].mean(dim=1)[0] + 0.25
    return (fg > 0).numpy().astype(np.int64)


def cli(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "fsseg_bench", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"fsseg-bench {' '.join(map(str, args))}: {done.stderr}")
    return done.stdout


def harness_numbers(results: Path, protocol: Path) -> dict:
    table = pd.read_csv(io.StringIO(cli("table", "--results", results, "--protocol", protocol, "--format", "csv",
                                        "--resamples", "200")), dtype={"fold": str})
    rows = table[table.fold == "0"]
    return {metric: float(group["value"].iloc[0]) for metric, group in rows.groupby("metric")}


def episodes_of(results: Path) -> list[dict]:
    run = next(results.glob("runs/*/*/*/run.json"))
    info = json.loads(run.read_text())
    return [json.loads(line) for line in Path(info["episode_list_path"]).read_text().splitlines() if line.strip()]


def panet_check(panet: Path, work: Path) -> None:
    import torchvision.transforms.functional as tr_F

    sys.path.insert(0, str(panet))
    from util.metric import Metric  # PANet's own code

    tree = work / "voc"
    cli("synth", "--root", tree, "--images", "240")
    protocol = work / "eq-panet.toml"
    text = (Path(__file__).resolve().parents[2] / "protocols" / "pascal5i-panet.toml").read_text()
    text = (text.replace('name = "pascal5i-panet"', 'name = "eq-panet"')
                .replace('split = "trainaug"', 'split = "val"').replace('query_sampling = "panet-original"',
                                                                       'query_sampling = "class-uniform"')
                .replace("episodes = 1000", "episodes = 600").replace("seeds = [1234, 1235, 1236, 1237, 1238]",
                                                                     "seeds = [1234]")
                .replace("folds = [0, 1, 2, 3]", "folds = [0]").replace("shots = [1, 5]", "shots = [1]")
                # Small inputs so that some queries lose their class in the resize (PANet's rule then matters).
                .replace("image_size = [417, 417]", f"image_size = [{PANET_SIDE}, {PANET_SIDE}]"))
    protocol.write_text(text.replace('dataset = "pascal-voc"', 'dataset = "synthetic5i"'))
    plugin = work / "brightness.py"
    plugin.write_text(PREDICTOR)
    results = work / "panet-results"
    cli("run", "--protocol", protocol, "--plugin", plugin, "--method", "brightness", "--data-root", tree,
        "--results", results, "--quiet")
    voc = next(tree.glob("**/VOC2012"))
    metric = Metric(max_label=20, n_runs=1)
    fold_classes = [1, 2, 3, 4, 5]
    lacking = 0
    for episode in episodes_of(results):
        (query,) = episode["query"]
        image = tr_F.resize(Image.open(voc / "JPEGImages" / f"{query}.jpg").convert("RGB"), [PANET_SIDE, PANET_SIDE])
        label = tr_F.resize(Image.open(voc / "SegmentationClassAug" / f"{query}.png"), [PANET_SIDE, PANET_SIDE],
                            interpolation=Image.NEAREST)
        label = np.array(label)
        target = np.zeros_like(label, dtype=np.int64)
        target[label == 255] = 255
        target[label == episode["class_id"]] = 1
        lacking += not (target == 1).any()
        prediction = brightness(tr_F.normalize(tr_F.to_tensor(image), MEAN, STD))
        metric.record(prediction, target, labels=[episode["class_id"]], n_run=0)
    _, miou = metric.get_mIoU(labels=fold_classes, n_run=0)
    _, fbiou = metric.get_mIoU_binary(n_run=0)
    ours = harness_numbers(results, protocol)
    print(f"PANet ({len(episodes_of(results))} episodes, {lacking} queries without their class at {PANET_SIDE} px)")
    print(f"  PANet Metric.get_mIoU        {100 * miou:.12f}   fsseg-bench miou_panet_metric  {ours['miou_panet_metric']:.12f}")
    print(f"  PANet Metric.get_mIoU_binary {100 * fbiou:.12f}   fsseg-bench fbiou_panet_metric {ours['fbiou_panet_metric']:.12f}")
    print(f"  (fsseg-bench pooled fbiou {ours['fbiou']:.12f})")
    sys.path.remove(str(panet))


def hsnet_check(hsnet: Path, work: Path) -> None:
    import types

    torch.Tensor.cuda = lambda self, *a, **k: self  # HSNet's meters live on the GPU; here the CPU
    # HSNet's logger module imports tensorboardX for training curves; the meter does not use it.
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    sys.path.insert(0, str(hsnet))
    from common.evaluation import Evaluator  # HSNet's own code
    from common.logger import AverageMeter

    Evaluator.initialize()
    tree = work / "coco"
    cli("synth", "--layout", "coco", "--root", tree, "--images", "400")
    protocol = work / "eq-hsnet-coco.toml"
    text = (Path(__file__).resolve().parents[2] / "protocols" / "coco20i-hsnet.toml").read_text()
    text = (text.replace('name = "coco20i-hsnet"', 'name = "eq-hsnet-coco"')
                .replace('query_sampling = "hsnet-coco-original"', 'query_sampling = "class-uniform"')
                .replace("episodes = 1000", "episodes = 200", 1).replace("folds = [0, 1, 2, 3]", "folds = [0]")
                .replace("shots = [1, 5]", "shots = [1]"))
    protocol.write_text(text)
    plugin = work / "brightness.py"
    plugin.write_text(PREDICTOR)
    results = work / "hsnet-results"
    cli("run", "--protocol", protocol, "--plugin", plugin, "--method", "brightness", "--data-root", tree,
        "--results", results, "--quiet")
    info = json.loads(next(results.glob("runs/*/*/*/run.json")).read_text())
    fold_classes = info["fold_classes"]

    class Dataset:  # what AverageMeter reads: HSNet's 0-based class ids of the fold
        benchmark, class_ids = "coco", [c - 1 for c in fold_classes]

    meter = AverageMeter(Dataset)
    coco = Path(info["data_root"])
    crowd = 0
    for episode in episodes_of(results):
        (query,) = episode["query"]
        image_path = next(coco.glob(f"*2014/{query}.jpg"))
        mask_path = next(coco.glob(f"annotations/*2014/{query}.png"))
        image = Image.open(image_path).convert("RGB").resize((400, 400), Image.BILINEAR)
        tensor = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)
        tensor = ((tensor - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])
        mask = torch.tensor(np.array(Image.open(mask_path)))
        crowd += int((mask == 255).any())
        mask = F.interpolate(mask[None, None].float(), (400, 400), mode="nearest")[0, 0]
        mask[mask != episode["class_id"]] = 0
        mask[mask == episode["class_id"]] = 1
        prediction = torch.from_numpy(brightness(tensor)).float()
        inter, union = Evaluator.classify_prediction(prediction[None].clone(), {"query_mask": mask[None]})
        meter.update(inter, union, torch.tensor([episode["class_id"] - 1]), None)
    miou, fbiou = meter.compute_iou()
    ours = harness_numbers(results, protocol)
    n = len(episodes_of(results))
    present = len({e["class_id"] for e in episodes_of(results)})
    print(f"HSNet COCO-20i ({n} episodes, {crowd} queries with crowd (255) pixels, {present}/{len(fold_classes)} classes)")
    print(f"  HSNet AverageMeter mIoU   {float(miou):.12f}   fsseg-bench miou  {ours['miou']:.12f}")
    print(f"  HSNet AverageMeter FB-IoU {float(fbiou):.12f}   fsseg-bench fbiou {ours['fbiou']:.12f}")
    # The same episodes with the void ignored (the rule before query_ignore existed).
    ignoring = work / "eq-hsnet-coco-ignore.toml"
    ignoring.write_text(text.replace('name = "eq-hsnet-coco"', 'name = "eq-hsnet-coco-ignore"')
                        .replace('query_ignore = "background"', 'query_ignore = "ignore"'))
    cli("run", "--protocol", ignoring, "--plugin", plugin, "--method", "brightness", "--data-root", tree,
        "--results", results, "--quiet", "--episode-list", info["episode_list_path"], "--fold", "0", "--shot", "1",
        "--seed", "0")
    other = harness_numbers(results, ignoring)
    print(f"  (with query_ignore = \"ignore\": mIoU {other['miou']:.12f}, FB-IoU {other['fbiou']:.12f})")
    sys.path.remove(str(hsnet))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panet", type=Path, required=True)
    parser.add_argument("--hsnet", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fsseg-equivalence-"))
    work.mkdir(parents=True, exist_ok=True)
    panet_check(args.panet, work)
    hsnet_check(args.hsnet, work)


if __name__ == "__main__":
    main()
