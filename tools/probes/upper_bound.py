"""The upper bound's recipe on its own: the embedded generator at a chosen difficulty, the retrain stage on the
ground-truth masks, then its val mIoU (as the evaluate stage scores it: its scales and mirror, no CRF) and its train
mIoU (low there too: the network underfits, it does not overfit).

    python -m tools.probes.upper_bound [--object-area 0.08 0.20] [--clutter 2 4] [--epochs 12]
        [--scratch] [--class-weights none|inverse_sqrt_frequency] [--cues-epochs 25] [--seed 0]

The stage commands run in a scratch folder on pipelines/synthetic.yaml's settings with these overrides: synthesize,
prepare, cues (without --scratch, for the classifier whose trunk starts the network: retrain.init_from_classifier)
and retrain --ground-truth. Prints one JSON line, with the val IoU of every class.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from dgcn.inference import predict_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import load_model
from stages.manifest import Manifest
from stages.params import load_params, merge
from stages.schemas.evaluate import EvaluateParams

REPO = Path(__file__).resolve().parents[2]


def stage(*args: str | Path, cwd: Path) -> None:
    """One stage command; its output shown only when it fails."""
    result = subprocess.run([sys.executable, "-m", "stages", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    if result.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{result.stdout}{result.stderr}")


def miou(model: torch.nn.Module, split, names: list[str], scales: list[float], flip: bool) -> ConfusionMatrix:
    matrix = ConfusionMatrix(split.dataset.num_classes)
    with torch.no_grad():
        for name in names:
            matrix.add(split.dataset.mask(name), predict_labels(model, split.dataset.image(name), scales=scales,
                                                                flip=flip))
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--object-area", type=float, nargs=2, default=[0.08, 0.20])
    parser.add_argument("--clutter", type=int, nargs=2, default=[2, 4])
    parser.add_argument("--epochs", type=int, default=12, help="retrain.epochs")
    parser.add_argument("--scratch", action="store_true", help="retrain.init_from_classifier: false")
    parser.add_argument("--class-weights", choices=["none", "inverse_sqrt_frequency"],
                        default="inverse_sqrt_frequency", help="retrain.class_weights")
    parser.add_argument("--cues-epochs", type=int, default=25, help="cues.epochs (the ablation's budget)")
    parser.add_argument("--seed", type=int, default=0, help="cues.seed and retrain.seed")
    args = parser.parse_args()
    config = merge(yaml.safe_load((REPO / "pipelines/synthetic.yaml").read_text()), {
        "synthesize": {"object_area": args.object_area, "clutter": args.clutter},
        "cues": {"epochs": args.cues_epochs, "seed": args.seed},
        "retrain": {"epochs": args.epochs, "seed": args.seed, "init_from_classifier": not args.scratch,
                    "class_weights": args.class_weights}})
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "probe.yaml").write_text(yaml.safe_dump(config))
        common = ["--config", work / "probe.yaml", "--defaults", REPO / "params.yaml"]
        manifest = ["--manifest", work / "prepare/manifest.json"]
        stage("synthesize", *common, "--out", work / "data", cwd=work)
        stage("prepare", *common, "--root", work / "data", "--out", work / "prepare", cwd=work)
        start = []
        if not args.scratch:
            stage("cues", *common, *manifest, "--out", work / "cues", cwd=work)
            start = ["--classifier", work / "cues/classifier.pt"]
        stage("retrain", *common, *manifest, "--ground-truth", *start, "--out", work / "upper_bound", cwd=work)
        data = Manifest.load(work / "prepare/manifest.json")
        model = load_model(work / "upper_bound/model.pt", "segmenter").eval()
        settings = load_params("evaluate", EvaluateParams, config=work / "probe.yaml", defaults=REPO / "params.yaml")
        val = miou(model, data.val, data.val.names, settings.scales, settings.flip).scores()
        train = miou(model, data.train, data.train.names[:len(data.val.names)], [1.0], False).scores()
    print(json.dumps({"object_area": args.object_area, "clutter": args.clutter, "epochs": args.epochs,
                      "start": "scratch" if args.scratch else "classifier", "class_weights": args.class_weights,
                      "seed": args.seed,
                      "val_miou": round(val["miou"], 4), "train_miou": round(train["miou"], 4),
                      "val_iou": [round(float(value), 3) for value in val["iou"]]}))


if __name__ == "__main__":
    main()
