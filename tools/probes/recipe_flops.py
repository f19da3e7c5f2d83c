"""What a data set's recipe asks of a GPU, stage by stage: the networks' floating-point operations, counted by torch's
FlopCounterMode on the meta device (no weights, no compute), and the hours they take at a few sustained throughputs.
An estimate of GPU time, not a measurement: the graph cuts and CRFs run on CPU workers and data loading is not
counted; `make gpu-check` measures the DGCN step itself.

    python -m tools.probes.recipe_flops [--dataset voc12_published] [--train 10582] [--val 1449]
        [--image 375 500] [--markdown docs/figures/voc_gpu_estimate.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dgcn.models.registry import build_classifier, build_segmenter
from stages.params import load_params
from stages.schemas.cues import CuesParams
from stages.schemas.evaluate import EvaluateParams
from stages.schemas.export import ExportParams
from stages.schemas.retrain import RetrainParams
from stages.schemas.train_dgcn import TrainDGCNParams

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 21
THROUGHPUTS = (25, 100, 400)  # sustained TFLOP/s: fp32 on an older card, TF32 on a recent one, bf16 on one
NETWORKS_EVALUATED = 3  # the DGCN network, the retrained one, the upper bound


def flops(model: torch.nn.Module, height: int, width: int, *, batch: int = 1, train: bool = False) -> float:
    """Operations of one forward (and backward when `train`) pass per image, on the meta device."""
    model.train(train)
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        output = model(torch.zeros(batch, 3, height, width, requires_grad=False))
        if train:
            scores = output.scores if hasattr(output, "scores") else output
            scores.float().sum().backward()
    return counter.get_total_flops() / batch


def scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return round(size[0] * scale), round(size[1] * scale)


def stage_flops(dataset: str, train: int, val: int, image: tuple[int, int]) -> dict[str, float]:
    """Total operations of each network stage of `dataset`'s recipe, for `train` / `val` images of size `image`."""
    config, defaults = REPO / "pipelines" / f"{dataset}.yaml", REPO / "params.yaml"
    cues = load_params("cues", CuesParams, config=config, defaults=defaults)
    dgcn = load_params("train_dgcn", TrainDGCNParams, config=config, defaults=defaults)
    export = load_params("export", ExportParams, config=config, defaults=defaults)
    retrain = load_params("retrain", RetrainParams, config=config, defaults=defaults)
    evaluate = load_params("evaluate", EvaluateParams, config=config, defaults=defaults)
    with torch.device("meta"):
        classifier = build_classifier(cues.arch, NUM_CLASSES - 1, **cues.arch_options)
        segmenter = build_segmenter(dgcn.arch, NUM_CLASSES, **dgcn.arch_options)
        retrained = build_segmenter(retrain.arch, NUM_CLASSES, **retrain.arch_options)
    side = cues.input_size
    long_side = scaled(image, side / max(image))
    cams = sum(flops(classifier, *scaled(long_side, s)) for s in cues.scales)
    native = image if export.input_size is None else scaled(image, export.input_size / max(image))
    test_pass = sum(flops(segmenter, *scaled(native, s)) for s in export.scales) * (2 if export.flip else 1)
    retrain_images = (retrain.iterations * retrain.batch_size if retrain.iterations is not None
                      else retrain.epochs * train)
    retrain_step = flops(retrained, retrain.crop_size, retrain.crop_size, train=True)
    evaluate_pass = sum(flops(retrained, *scaled(image, s)) for s in evaluate.scales) * (2 if evaluate.flip else 1)
    return {
        "cues": cues.epochs * train * flops(classifier, side, side, train=True) + train * cams,
        "train_dgcn": dgcn.epochs * train * flops(segmenter, dgcn.crop_size, dgcn.crop_size, train=True),
        "export": train * test_pass,
        "retrain": retrain_images * retrain_step,
        "upper_bound": retrain_images * retrain_step,
        "evaluate": val * NETWORKS_EVALUATED * evaluate_pass,
    }


def markdown(totals: dict[str, float]) -> str:
    header = "| stage | PFLOP | " + " | ".join(f"hours at {t} TFLOP/s" for t in THROUGHPUTS) + " |"
    rows = [header, "|---" * (2 + len(THROUGHPUTS)) + "|"]
    for name, total in [*totals.items(), ("all", sum(totals.values()))]:
        hours = " | ".join(f"{total / (t * 1e12) / 3600:.1f}" for t in THROUGHPUTS)
        rows.append(f"| {name} | {total / 1e15:,.0f} | {hours} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="voc12_published", help="pipelines/<dataset>.yaml over params.yaml")
    parser.add_argument("--train", type=int, default=10_582, help="training images (VOC train_aug)")
    parser.add_argument("--val", type=int, default=1_449, help="val images (VOC val)")
    parser.add_argument("--image", type=int, nargs=2, default=[375, 500], help="a typical image's height and width")
    parser.add_argument("--markdown", type=Path, help="write the table to this file too")
    args = parser.parse_args()
    table = markdown(stage_flops(args.dataset, args.train, args.val, tuple(args.image)))
    print(table, end="")
    if args.markdown is not None:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
