"""Score the harness's runs with the original codebases' own metric code (not part of the suite).

    python tests/equivalence/against_originals.py --panet PANet --hsnet hsnet --pfenet PFENet [--work DIR]

PANet, HSNet and PFENet are their published repositories (checkouts outside this project; nothing
of them is copied here). On stand-in trees (VOC format with void borders, COCO format with crowd
regions written as 255, FSS-1000's class folders), one deterministic predictor runs through
`fsseg-bench run` as a plugin; this script then replays each episode of the run's own episode list
the way the original test loop prepares the query (PANet: torchvision's Resize on PIL, nearest for
the label; HSNet: its torchvision transform, torch's nearest for the mask, its ignore and
binarisation rules; PFENet: its own OpenCV `util/transform.py`), applies the same predictor, and
feeds the originals' metric code: PANet's `util.metric.Metric` (record / get_mIoU /
get_mIoU_binary), HSNet's `common.evaluation.Evaluator` + `common.logger.AverageMeter` (moved to
the CPU), PFENet's `util.util.intersectionAndUnionGPU` with test.py's meters. It prints the
originals' numbers beside `fsseg-bench table --format csv`'s, to all digits. Needs
opencv-python-headless (the test extra) for PFENet's transform.
"""

from __future__ import annotations

import argparse
import io
import json
import re
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


def forget(package: str) -> None:
    """Unload an original's top-level package (PANet and PFENet both name theirs `util`)."""
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[module]


def voc_folder(root: Path) -> Path:
    """The folder holding JPEGImages/ (a run records the tree root or VOC2012/ itself)."""
    return root if (root / "JPEGImages").is_dir() else next(root.glob("**/VOC2012"))


def scaled_down(base: str, name: str, episodes: int, extra: tuple = ()) -> str:
    """The built-in protocol `base` renamed `name`: fold 0 at 1 shot, `episodes` class-uniform
    queries, on the stand-in's dataset, plus `extra` (old, new) text replacements."""
    text = (Path(__file__).resolve().parents[2] / "protocols" / f"{base}.toml").read_text()
    text = re.sub(r'query_sampling = "[a-z-]+"', 'query_sampling = "class-uniform"', text)
    text = re.sub(r"^episodes = \d+", f"episodes = {episodes}", text, count=1, flags=re.M)
    text = (text.replace(f'name = "{base}"', f'name = "{name}"').replace("folds = [0, 1, 2, 3]", "folds = [0]")
                .replace("shots = [1, 5]", "shots = [1]").replace('dataset = "pascal-voc"', 'dataset = "synthetic5i"'))
    for old, new in extra:
        text = text.replace(old, new)
    return text


def run_brightness(work: Path, tree: Path, text: str, name: str | None = None) -> tuple[Path, Path]:
    """Write the protocol `text` and the predictor plugin, and run it: (protocol file, results folder)."""
    name = name or re.search(r'^name = "([^"]+)"', text, re.M)[1]
    protocol, plugin, results = work / f"{name}.toml", work / "brightness.py", work / f"{name}-results"
    protocol.write_text(text)
    plugin.write_text(PREDICTOR)
    cli("run", "--protocol", protocol, "--plugin", plugin, "--method", "brightness", "--data-root", tree,
        "--results", results, "--quiet")
    return protocol, results


def panet_check(panet: Path, work: Path) -> None:
    import torchvision.transforms.functional as tr_F

    sys.path.insert(0, str(panet))
    from util.metric import Metric  # PANet's own code

    tree = work / "voc"
    cli("synth", "--root", tree, "--images", "240")
    protocol, results = run_brightness(work, tree, scaled_down("pascal5i-panet", "eq-panet", 600, (
        ('split = "trainaug"', 'split = "val"'), ("seeds = [1234, 1235, 1236, 1237, 1238]", "seeds = [1234]"),
        # Small inputs so that some queries lose their class in the resize (PANet's rule then matters).
        ("image_size = [417, 417]", f"image_size = [{PANET_SIDE}, {PANET_SIDE}]"))))
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
    forget("util")


def hsnet_check(hsnet: Path, work: Path, benchmark: str) -> None:
    """HSNet's loaders' query preparation (torchvision Resize on PIL, torch nearest for the mask) and
    its own Evaluator + AverageMeter, on `benchmark` = pascal | coco | fss."""
    import types

    import torchvision.transforms as transforms

    torch.Tensor.cuda = lambda self, *a, **k: self  # HSNet's meters live on the GPU; here the CPU
    # HSNet's logger module imports tensorboardX for training curves; the meter does not use it.
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    sys.path.insert(0, str(hsnet))
    from common.evaluation import Evaluator  # HSNet's own code
    from common.logger import AverageMeter

    Evaluator.initialize()
    base, layout, images, episodes = {"pascal": ("pascal5i-hsnet", "voc", 240, 300),
                                      "coco": ("coco20i-hsnet", "coco", 400, 200),
                                      "fss": ("fss1000-hsnet", "fss1000", None, 300)}[benchmark]
    tree = work / f"hsnet-{benchmark}"
    cli("synth", "--layout", layout, "--root", tree, *(["--images", images] if images else []))
    name = f"eq-hsnet-{benchmark}"
    text = scaled_down(base, name, episodes)
    protocol, results = run_brightness(work, tree, text, name)
    info = json.loads(next(results.glob("runs/*/*/*/run.json")).read_text())
    fold_classes = info["fold_classes"]

    class Dataset:  # what AverageMeter reads: the benchmark and 0-based class ids of the fold
        class_ids = [c - 1 for c in fold_classes]

    Dataset.benchmark = benchmark
    meter = AverageMeter(Dataset)
    root = Path(info["data_root"])
    transform = transforms.Compose([transforms.Resize(size=(400, 400)), transforms.ToTensor(),
                                    transforms.Normalize(MEAN, STD)])  # HSNet's test transform
    if benchmark == "fss":
        from fsseg_bench.data.fss import locate_fss  # where the class folders are, nothing more
        root = locate_fss(root).root
    void = 0
    for episode in episodes_of(results):
        (query,) = episode["query"]
        if benchmark == "pascal":
            voc = voc_folder(root)
            image_path, mask_path = voc / "JPEGImages" / f"{query}.jpg", voc / "SegmentationClassAug" / f"{query}.png"
        elif benchmark == "coco":
            image_path, mask_path = next(root.glob(f"*2014/{query}.jpg")), next(root.glob(f"annotations/*2014/{query}.png"))
        else:
            image_path, mask_path = root / f"{query}.jpg", root / f"{query}.png"
        tensor = transform(Image.open(image_path).convert("RGB"))
        if benchmark == "fss":  # data/fss.py: read_mask binarises at 128, then the resize
            mask = torch.tensor(np.array(Image.open(mask_path).convert("L")))
            mask[mask < 128] = 0
            mask[mask >= 128] = 1
            mask = F.interpolate(mask[None, None].float(), (400, 400), mode="nearest")[0, 0]
            batch = {"query_mask": mask[None]}
        else:
            mask = torch.tensor(np.array(Image.open(mask_path)))
            void += int((mask == 255).any())
            mask = F.interpolate(mask[None, None].float(), (400, 400), mode="nearest")[0, 0]
            if benchmark == "pascal":  # data/pascal.py: extract_ignore_idx
                ignore = (mask / 255).floor()
            mask[mask != episode["class_id"]] = 0
            mask[mask == episode["class_id"]] = 1
            batch = {"query_mask": mask[None]}
            if benchmark == "pascal":
                batch["query_ignore_idx"] = ignore[None]
        prediction = torch.from_numpy(brightness(tensor)).float()
        inter, union = Evaluator.classify_prediction(prediction[None].clone(), batch)
        meter.update(inter, union, torch.tensor([episode["class_id"] - 1]), None)
    miou, fbiou = meter.compute_iou()
    ours = harness_numbers(results, protocol)
    n = len(episodes_of(results))
    present = len({e["class_id"] for e in episodes_of(results)})
    print(f"HSNet {benchmark} ({n} episodes, {void} queries with 255 pixels, {present}/{len(fold_classes)} classes)")
    print(f"  HSNet AverageMeter mIoU   {float(miou):.12f}   fsseg-bench miou  {ours['miou']:.12f}")
    print(f"  HSNet AverageMeter FB-IoU {float(fbiou):.12f}   fsseg-bench fbiou {ours['fbiou']:.12f}")
    if benchmark == "coco":  # the same episodes with the void ignored (the rule before query_ignore existed)
        ignoring = work / "eq-hsnet-coco-ignore.toml"
        ignoring.write_text(text.replace(f'name = "{name}"', 'name = "eq-hsnet-coco-ignore"')
                            .replace('query_ignore = "background"', 'query_ignore = "ignore"'))
        cli("run", "--protocol", ignoring, "--plugin", work / "brightness.py", "--method", "brightness", "--data-root", tree,
            "--results", results, "--quiet", "--episode-list", info["episode_list_path"], "--fold", "0",
            "--shot", "1", "--seed", "0")
        other = harness_numbers(results, ignoring)
        print(f"  (with query_ignore = \"ignore\": mIoU {other['miou']:.12f}, FB-IoU {other['fbiou']:.12f})")
    sys.path.remove(str(hsnet))
    forget("common")


def pfenet_check(pfenet: Path, work: Path) -> None:
    """PFENet's val transform (util/transform.py: Resize to 473 on the longer side, floor to 8, pad;
    ToTensor; Normalize on 0..255, all with OpenCV) and its test loop's scoring (the label padded to
    a square of 255, the scores upsampled bilinear with align_corners, util.util.intersectionAndUnionGPU,
    the per-class meters of test.py's validate, replayed line for line; FB-IoU from its pooled meters)."""
    import cv2

    sys.path.insert(0, str(pfenet))
    from util import transform as pfenet_transform  # PFENet's own code
    from util.util import intersectionAndUnionGPU

    tree = work / "pfenet-voc"
    cli("synth", "--root", tree, "--images", "240")
    protocol, results = run_brightness(work, tree, scaled_down("pascal5i-pfenet", "eq-pfenet", 300, (
        ("min_fg_pixels = 2048", "min_fg_pixels = 0"),)))
    info = json.loads(next(results.glob("runs/*/*/*/run.json")).read_text())
    fold_classes = info["fold_classes"]
    voc = voc_folder(Path(info["data_root"]))
    scale = 255
    val_transform = pfenet_transform.Compose([
        pfenet_transform.Resize(size=473), pfenet_transform.ToTensor(),
        pfenet_transform.Normalize(mean=[m * scale for m in MEAN], std=[s * scale for s in STD])])
    intersection_sum, union_sum = np.zeros(2), np.zeros(2)
    class_intersection, class_union = [0] * len(fold_classes), [0] * len(fold_classes)
    exact_intersection, exact_union = [0] * len(fold_classes), [0] * len(fold_classes)  # the same, in int
    for episode in episodes_of(results):
        (query,) = episode["query"]
        image = np.float32(cv2.cvtColor(cv2.imread(str(voc / "JPEGImages" / f"{query}.jpg"), cv2.IMREAD_COLOR),
                                        cv2.COLOR_BGR2RGB))
        # PFENet reads class-index grayscale PNGs with cv2.IMREAD_GRAYSCALE; the stand-in's are VOC
        # palette PNGs (whose grayscale conversion would mix colours), so their indexes come from PIL.
        label = np.array(Image.open(voc / "SegmentationClassAug" / f"{query}.png"))
        target_pix, ignore_pix = np.where(label == episode["class_id"]), np.where(label == 255)
        label[:, :] = 0
        label[target_pix] = 1
        label[ignore_pix] = 255
        raw_label = label.copy()
        tensor, _ = val_transform(image, label)
        fg = tensor[None].mean(dim=1) + 0.25  # the plugin's scores, as brightness_scores
        output = torch.stack([torch.zeros_like(fg), fg], dim=1)
        ori_label = torch.from_numpy(raw_label)[None]
        longer = max(ori_label.size(1), ori_label.size(2))
        backmask = torch.ones(1, longer, longer) * 255
        backmask[0, :ori_label.size(1), :ori_label.size(2)] = ori_label
        target = backmask.clone().long()
        output = F.interpolate(output, size=target.size()[1:], mode="bilinear", align_corners=True)
        output = output.max(1)[1]
        # PFENet calls this on CUDA tensors; torch.histc on the CPU needs floats (the only change).
        intersection, union, _ = intersectionAndUnionGPU(output.float(), target.float(), 2, 255)
        intersection, union = intersection.numpy(), union.numpy()
        intersection_sum += intersection
        union_sum += union
        position = fold_classes.index(episode["class_id"])  # test.py: (subcls - 1) % split_gap
        class_intersection[position] += intersection[1]
        class_union[position] += union[1]
        exact_intersection[position] += int(intersection[1])
        exact_union[position] += int(union[1])
    class_miou = sum(i / (u + 1e-10) for i, u in zip(class_intersection, class_union)) / len(fold_classes)
    fb_miou = np.mean(intersection_sum / (union_sum + 1e-10))
    ours = harness_numbers(results, protocol)
    n = len(episodes_of(results))
    present = len({e["class_id"] for e in episodes_of(results)})
    print(f"PFENet ({n} episodes, {present}/{len(fold_classes)} classes)")
    print(f"  PFENet class_miou (meanIoU) {100 * class_miou:.12f}   fsseg-bench miou  {ours['miou']:.12f}")
    print(f"  PFENet mIoU (FBIoU)         {100 * fb_miou:.12f}   fsseg-bench fbiou {ours['fbiou']:.12f}")
    exact = sum(i / (u + 1e-10) for i, u in zip(exact_intersection, exact_union)) / len(fold_classes)
    print(f"  (test.py's class meters add float32 histc counts; summed as integers: {100 * exact:.12f})")
    sys.path.remove(str(pfenet))
    forget("util")


CHECKS = ["panet", "hsnet-pascal", "hsnet-coco", "hsnet-fss", "pfenet"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panet", type=Path, required=True)
    parser.add_argument("--hsnet", type=Path, required=True)
    parser.add_argument("--pfenet", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=CHECKS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fsseg-equivalence-"))
    work.mkdir(parents=True, exist_ok=True)
    for check in args.only:
        if check == "panet":
            panet_check(args.panet, work)
        elif check == "pfenet":
            pfenet_check(args.pfenet, work)
        else:
            hsnet_check(args.hsnet, work, check.split("-")[1])


if __name__ == "__main__":
    main()
