"""GF-SAM's own code beside the harness's `gf-sam`, on the same episodes and weights (not part of the suite).

    python tests/equivalence/gfsam_masks.py --gfsam GF-SAM [--work DIR] [--episodes 40] [--side 128] [--sam vit_b]

GF-SAM is its published repository (ANDYZAQ/GF-SAM, a checkout outside this project; nothing of it
is copied here; its `segment_anything` and `dinov2` folders are imported from the checkout). No
weights exist here, so both sides load the same random ones, written by this script in the
originals' formats: a DINOv2-shaped ViT (Meta's `DinoVisionTransformer`, 4 blocks of width 96, layer
scales set to 1 so that the blocks matter) saved as Meta's state dict, read by the harness through
timm's converter (`vit-tiny14`); and a test-size SAM (`sam-tiny`'s shape, built with GF-SAM's copy
of segment_anything) saved as Meta's state dict, or with `--sam vit_b` Meta's ViT-B SAM (random
weights) at GF-SAM's 1024 px.

For each benchmark (FSS-1000, COCO-20i) and shot (1, 5), on a stand-in tree in the original
layout: `fsseg-bench run` of `fss1000-gfsam` / `coco20i-gfsam` scaled to `--side` pixels (the test
SAM's input), saving every predicted mask; then GF-SAM's own loop: `FSSDataset` (its HSNet loaders,
`fix_randseed(0)`), `GFSAM.set_reference / set_target / predict`, its `Evaluator` and
`AverageMeter`. It prints, per benchmark and shot: episodes whose (query, supports, class) agree,
masks identical to the pixel, and both mIoU / FB-IoU.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "fsseg_bench", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"fsseg-bench {' '.join(map(str, args))}: {done.stderr}")
    return done.stdout


def write_weights(gfsam: Path, work: Path, sam_variant: str | None = None) -> tuple[Path, Path, object, object]:
    """Random DINOv2-tiny and SAM (test size, or Meta's `sam_variant`, e.g. vit_b at 1024 px) in Meta's
    formats; -> (dino path, sam path, their ViT, their Sam)."""
    from functools import partial

    from dinov2.models.vision_transformer import DinoVisionTransformer  # GF-SAM's copy
    from segment_anything import modeling  # GF-SAM's copy

    torch.manual_seed(0)
    vit = DinoVisionTransformer(img_size=518, patch_size=14, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4,
                                init_values=1e-5, ffn_layer="mlp", block_chunks=0, qkv_bias=True, proj_bias=True,
                                ffn_bias=True).eval()
    with torch.no_grad():
        for name, parameter in vit.named_parameters():
            if name.endswith("gamma"):
                parameter.fill_(1.0)
            if name in ("pos_embed", "cls_token"):
                parameter.normal_(0, 0.02)
    dino = work / "dinov2_tiny_pretrain.pth"
    torch.save(vit.state_dict(), dino)
    if sam_variant:
        from segment_anything import sam_model_registry  # GF-SAM's copy

        sam = sam_model_registry[sam_variant](checkpoint=None).eval()
        sam_path = work / f"sam_{sam_variant}_random.pth"
        torch.save(sam.state_dict(), sam_path)
        return dino, sam_path, vit, sam
    side, embedding = 128, 8
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(depth=2, embed_dim=64, img_size=side, mlp_ratio=4,
                                               norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                                               patch_size=16, qkv_bias=True, use_rel_pos=True,
                                               global_attn_indexes=(1,), window_size=4, out_chans=256),
        prompt_encoder=modeling.PromptEncoder(embed_dim=256, image_embedding_size=(embedding, embedding),
                                              input_image_size=(side, side), mask_in_chans=16),
        mask_decoder=modeling.MaskDecoder(num_multimask_outputs=3, transformer=modeling.TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()
    sam_path = work / "sam_tiny.pth"
    torch.save(sam.state_dict(), sam_path)
    return dino, sam_path, vit, sam


def scaled(base: str, name: str, side: int, episodes: int, shot: int) -> str:
    text = (ROOT / "protocols" / f"{base}.toml").read_text()
    text = re.sub(r"^episodes = \d+", f"episodes = {episodes}", text, count=1, flags=re.M)
    return (text.replace(f'name = "{base}"', f'name = "{name}"').replace("folds = [0, 1, 2, 3]", "folds = [0]")
                .replace("shots = [1, 5]", f"shots = [{shot}]").replace("image_size = [1024, 1024]",
                                                                         f"image_size = [{side}, {side}]"))


def coco_lists(tree: Path, fold: int) -> dict[int, list[str]]:
    """HSNet-format fold lists for the stand-in: class 0..79 of the fold (interleaved) -> val images holding it."""
    lists = {c: [] for c in range(fold, 80, 4)}
    for mask in sorted((tree / "COCO2014" / "annotations" / "val2014").glob("*.png")):
        present = set(np.unique(np.array(Image.open(mask))).tolist())
        for c in lists:
            if c + 1 in present:
                lists[c].append(f"val2014/{mask.stem}.jpg")
    return lists


def their_layout(benchmark: str, tree: Path, work: Path) -> Path:
    """GF-SAM's datapath for the stand-in tree (symlinks)."""
    datapath = work / f"gfsam-data-{benchmark}"
    if datapath.exists():
        return datapath
    if benchmark == "fss":
        (datapath / "FSS-1000").mkdir(parents=True)
        (datapath / "FSS-1000" / "data").symlink_to((tree / "FSS-1000").resolve())
        (datapath / "FSS-1000" / "splits").symlink_to((tree / "splits" / "fss").resolve())
    else:
        (datapath / "COCO2014" / "splits" / "val").mkdir(parents=True)
        for part in ("val2014", "train2014", "annotations"):
            (datapath / "COCO2014" / part).symlink_to((tree / "COCO2014" / part).resolve())
        lists = coco_lists(tree, 0)
        for folder in (datapath / "COCO2014" / "splits" / "val", tree / "splits" / "coco" / "val"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "fold0.pkl").write_bytes(pickle.dumps(lists))
    return datapath


def harness_run(benchmark: str, tree: Path, work: Path, side: int, episodes: int, shot: int, dino: Path,
                sam: Path, sam_name: str) -> tuple[Path, list[dict], dict]:
    base = {"fss": "fss1000-gfsam", "coco": "coco20i-gfsam"}[benchmark]
    name = f"eq-gfsam-{benchmark}-{shot}-{side}"
    protocol, results = work / f"{name}.toml", work / f"{name}-results"
    protocol.write_text(scaled(base, name, side, episodes, shot))
    # GF-SAM's transforms.Resize(518) on a tensor antialiases under the torchvision running here when
    # it defaults to it (>= 0.17; GF-SAM pins 0.14, which did not): the harness is told the same.
    import torchvision.transforms as transforms

    antialias = bool(getattr(transforms.Resize(518), "antialias", False))
    cli("run", "--protocol", protocol, "--method", "gf-sam", "--option", f"encoder_antialias={str(antialias).lower()}",
        "--option", "backbone=vit-tiny14", "--weights", dino,
        "--option", f"sam={sam_name}", "--option", f"sam_weights={sam}", "--data-root", tree, "--results", results,
        "--save-predictions", episodes, "--quiet")
    run = next(results.glob("runs/*/*/*/run.json"))
    info = json.loads(run.read_text())
    listed = [json.loads(line) for line in Path(info["episode_list_path"]).read_text().splitlines() if line.strip()]
    table = pd.read_csv(io.StringIO(cli("table", "--results", results, "--protocol", protocol, "--format", "csv",
                                        "--resamples", "200")), dtype={"fold": str})
    rows = table[table.fold == "0"]
    numbers = {metric: float(group["value"].iloc[0]) for metric, group in rows.groupby("metric")}
    return run.parent, listed, numbers


def check(gfsam: Path, benchmark: str, shot: int, work: Path, side: int, episodes: int, weights,
          sam_name: str) -> None:
    from matcher.GFSAM import GFSAM  # GF-SAM's own code
    from matcher.common import utils
    from matcher.common.evaluation import Evaluator
    from matcher.common.logger import AverageMeter
    from matcher.data.dataset import FSSDataset
    from segment_anything import SamPredictor

    dino, sam_path, vit, sam = weights
    tree = work / f"tree-{benchmark}"
    if not tree.exists():
        cli("synth", "--layout", {"fss": "fss1000", "coco": "coco"}[benchmark], "--root", tree,
            *(["--images", 240] if benchmark == "coco" else []))
    datapath = their_layout(benchmark, tree, work)
    run_dir, listed, ours = harness_run(benchmark, tree, work, side, episodes, shot, dino, sam_path, sam_name)

    model = GFSAM(encoder=vit, generator=SamPredictor(sam), input_size=side, device=torch.device("cpu"))
    Evaluator.initialize()
    FSSDataset.initialize(img_size=side, datapath=str(datapath), use_original_imgsize=False)
    loader = FSSDataset.build_dataloader(benchmark, 1, 0, 0, "test", shot)
    utils.fix_randseed(0)
    meter = AverageMeter(loader.dataset)
    same_episode = same_mask = 0
    differing, foreground = [], []
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if index == episodes:
                break
            spec = listed[index]
            stem = lambda n: Path(str(n)).stem  # noqa: E731
            theirs = (stem(batch["query_name"][0]), tuple(stem(n[0]) for n in batch["support_names"]),
                      int(batch["class_id"]))
            if benchmark == "fss":  # FSS ids are <class>/<k>; the class id is the test-class index
                theirs = (f"{Path(batch['query_name'][0]).parent.name}/{theirs[0]}",
                          tuple(f"{Path(batch['query_name'][0]).parent.name}/{s}" for s in theirs[1]), theirs[2])
            mine = (spec["query"][0], tuple(spec["support"]), spec["class_id"] - 1)
            same_episode += (theirs[0], theirs[1]) == (mine[0], mine[1])
            model.set_reference(batch["support_imgs"], batch["support_masks"])
            model.set_target(batch["query_img"])
            prediction, _ = model.predict()
            model.clear()
            if prediction.shape[-1] != side:  # GF-SAM's no-point branch returns 1024 x 1024 zeros
                prediction = torch.zeros(1, side, side)
            inter, union = Evaluator.classify_prediction(prediction.clone(), batch)
            meter.update(inter, union, batch["class_id"], loss=None)
            saved = np.array(Image.open(run_dir / "predictions" / f"{index:05d}.png"))
            agree = np.array_equal(saved, prediction[0].numpy().astype(np.uint8))
            same_mask += agree
            foreground.append(float(prediction.mean()))
            if not agree:
                differing.append((index, int((saved != prediction[0].numpy().astype(np.uint8)).sum())))
    miou, fbiou, _ = meter.compute_iou()
    print(f"GF-SAM {benchmark} {shot}-shot at {side} px, {episodes} episodes: same episodes {same_episode}/{episodes}, "
          f"identical masks {same_mask}/{episodes}" + (f" (differing: {differing[:5]})" if differing else "")
          + f"; predicted foreground {np.mean(foreground):.1%} of pixels on average, {sum(f == 0 for f in foreground)} empty")
    print(f"  GF-SAM AverageMeter mIoU {float(miou):.6f} FB-IoU {float(fbiou):.6f};  fsseg-bench miou "
          f"{ours['miou']:.6f} fbiou {ours['fbiou']:.6f} (GF-SAM's mean counts classes without episodes as 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gfsam", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--benchmarks", nargs="+", default=["fss", "coco"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--sam", default=None, help="Meta's SAM variant with random weights (vit_b: 1024 px) "
                                                    "instead of the test-size SAM (128 px)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gfsam-eq-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.Tensor.cuda = lambda self, *a, **k: self  # GF-SAM's meters live on the GPU; here the CPU
    torch.set_num_threads(1)  # as each runner worker: a matmul split over other thread counts rounds otherwise
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))
    # GF-SAM's dataset module imports its PACO/LVIS loaders, which need detectron2 (not used here)
    for name in ("detectron2", "detectron2.structures", "detectron2.structures.masks"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(args.gfsam.resolve()))
    weights = write_weights(args.gfsam, work, args.sam)
    side, sam_name = (1024, f"sam_{args.sam}") if args.sam else (args.side, "sam-tiny")
    for benchmark in args.benchmarks:
        for shot in args.shots:
            check(args.gfsam, benchmark, shot, work, side, args.episodes, weights, sam_name)


if __name__ == "__main__":
    main()
