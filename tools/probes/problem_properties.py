"""Does a setting of the ablation plan have the problem DGCN was built for? Three properties, measured before any DGCN
stage runs:

  partial activation  the cues stage's foreground cues cover at most --max-recall (0.40) of every class's object
                      pixels at a precision of at least --min-precision (0.85) for every class (scored on the cue
                      grid against the train masks, as the cues stage scores its cues);
  colour falls short  the dense CRF on the cues alone (no network) stays at least --min-gap (0.15) mIoU below the
                      upper bound: the crf stage's unary (dgcn.evidence.iter_crf_labels, crf.grown_confidence) on
                      evidence that holds the cues and is uniform over the image's classes elsewhere, with the
                      dense_crf kernels; scored on the train images;
  a real upper bound  the network trained on the ground truth (retrain --ground-truth, from the cue classifier's
                      trunk) reaches at least --min-upper-bound (0.70) val mIoU, scored as the evaluate stage scores.

    python -m tools.probes.problem_properties [--setting synthetic_parts] [--seed 0] [-S synthesize.num_train=240]
        [--sheet docs/figures/parts_sheet.png] [--sheet-images 6]

The stage commands (synthesize, prepare, cues, retrain --ground-truth) run in a scratch folder on the setting's
pipelines/<dataset>.yaml with ablation.yaml's `common` budget, the setting's overrides, the seed as cues.seed and
retrain.seed, then any -S key=value (a YAML value). Prints the figures, one line per property with its verdict, and
one JSON line; --sheet writes a contact sheet of the first train images: image, mask, cues (light: no cue).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dgcn.cues import CueStore, cue_label_map
from dgcn.data.loading import resize_labels
from dgcn.data.synthetic import contact_sheet
from dgcn.evidence import evidence_from_labels, iter_crf_labels
from dgcn.metrics import ConfusionMatrix
from dgcn.model_files import load_model
from stages.manifest import Manifest, Split
from stages.params import load_params, merge
from stages.schemas.crf import CRFStageParams
from stages.schemas.dense_crf import DenseCRFParams
from stages.schemas.evaluate import EvaluateParams
from tools.ablate import load_plan, run_overrides
from tools.probes.graph_features import class_counts
from tools.probes.upper_bound import miou, stage

REPO = Path(__file__).resolve().parents[2]
CRF_WORKERS = 2


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def setting_config(setting: str, seed: int, extra: list[str]) -> dict[str, Any]:
    """The setting's pipelines/<dataset>.yaml under the plan's budget, the setting's overrides, the seed (the plan's
    seed keys but train_dgcn.seed: no DGCN stage runs here) and `extra` (key=value strings)."""
    plan = load_plan(REPO / "ablation.yaml")
    overrides = run_overrides(plan, setting, "dgcn", seed)  # the `dgcn` variant overrides nothing
    for item in extra:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    dataset = plan.settings[setting].dataset
    return merge(yaml.safe_load((REPO / f"pipelines/{dataset}.yaml").read_text()), nested(overrides))


def cue_figures(train: Split, cues: CueStore) -> tuple[np.ndarray, float]:
    """Per class (3, C) counts on the cue grid (class_counts: correct labels, labels, the class's pixels) and the
    fraction of grid cells with a cue."""
    counts = np.zeros((3, len(cues.class_names)), dtype=np.int64)
    labelled = cells = 0
    for i in train.scored():
        cue = cues[i]
        mask = resize_labels(train.dataset.mask(train.names[i]), cue.shape[1:])
        counts += class_counts(cue[None], mask[None])
        labelled += int(cue.any(axis=0).sum())
        cells += mask.size
    return counts, labelled / cells


def crf_on_cues(train: Split, cues: CueStore, num_classes: int, confidence: float, kernels: dict[str, float]
                ) -> float:
    """mIoU on the train masks of the crf stage's CRF run on the cues alone: evidence whose grown mask and
    probability are the cue where there is one and uniform over the image's classes elsewhere."""
    scored = train.scored()
    # One label per grid cell: a cue's share of its cell is 1, so every cue cell counts as grown.
    evidence = (evidence_from_labels(cue_label_map(cues[i]), cues[i].shape[1:], [0, *train.classes[i]], num_classes,
                                     threshold=0.5) for i in scored)
    images = (train.dataset.image(train.names[i]) for i in scored)
    scores = ConfusionMatrix(num_classes)
    for i, labels in zip(scored, iter_crf_labels(images, evidence, confidence=confidence, workers=CRF_WORKERS,
                                                 **kernels), strict=True):
        scores.add(train.dataset.mask(train.names[i]), labels)
    return scores.miou()


def cue_sheet(train: Split, cues: CueStore, out: Path, count: int) -> None:
    """Contact sheet of the first `count` train images: image, mask, cues upsampled to the image (nearest)."""
    names = train.names[:count]

    def cue_map(name: str) -> np.ndarray:
        i = train.names.index(name)
        return resize_labels(cue_label_map(cues[i]), tuple(train.sizes[i]))

    contact_sheet(train.dataset, names, out, columns=min(count, 3), extra=cue_map)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="synthetic_parts", help="a setting of ablation.yaml")
    parser.add_argument("--seed", type=int, default=0, help="cues.seed and retrain.seed")
    parser.add_argument("-S", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="a further dotted override, e.g. synthesize.num_train=240 (repeatable)")
    parser.add_argument("--max-recall", type=float, default=0.40)
    parser.add_argument("--min-precision", type=float, default=0.85)
    parser.add_argument("--min-gap", type=float, default=0.15)
    parser.add_argument("--min-upper-bound", type=float, default=0.70)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet (image, mask, cues) here")
    parser.add_argument("--sheet-images", type=int, default=6)
    parser.add_argument("--work", type=Path,
                        help="run the stages in this folder and keep it (default: a temporary one); a stage whose "
                             "output is there already is not run again")
    args = parser.parse_args()
    config = setting_config(args.setting, args.seed, args.extra)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder) if args.work is None else args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        (work / "probe.yaml").write_text(yaml.safe_dump(config))
        common = ["--config", work / "probe.yaml", "--defaults", REPO / "params.yaml"]
        manifest = ["--manifest", work / "prepare/manifest.json"]
        for name, out, *more in (
                ("synthesize", "data"), ("prepare", "prepare", "--root", work / "data"), ("cues", "cues", *manifest),
                ("retrain", "upper_bound", *manifest, "--ground-truth", "--classifier", work / "cues/classifier.pt")):
            if not (work / out).exists():
                stage(name, *common, *more, "--out", work / out, cwd=work)
        data = Manifest.load(work / "prepare/manifest.json")
        cues = CueStore(work / "cues/cues.zarr")
        params = {name: load_params(name, schema, config=work / "probe.yaml", defaults=REPO / "params.yaml")
                  for name, schema in (("crf", CRFStageParams), ("dense_crf", DenseCRFParams),
                                       ("evaluate", EvaluateParams))}
        counts, labelled = cue_figures(data.train, cues)
        crf = crf_on_cues(data.train, cues, len(data.class_names), params["crf"].grown_confidence,
                          params["dense_crf"].kernels())
        model = load_model(work / "upper_bound/model.pt", "segmenter").eval()
        upper = miou(model, data.val, data.val.names, params["evaluate"].scales, params["evaluate"].flip).miou()
        if args.sheet is not None:
            cue_sheet(data.train, cues, args.sheet, args.sheet_images)
    report(args, data.class_names, counts, labelled, crf, upper)


def report(args: argparse.Namespace, class_names: tuple[str, ...], counts: np.ndarray, labelled: float, crf: float,
           upper: float) -> None:
    """Print the per-class cue table, one verdict line per property, then everything as one JSON line."""
    precision = counts[0] / np.maximum(counts[1], 1)
    recall = counts[0] / np.maximum(counts[2], 1)
    objects = range(1, len(class_names))
    print(f"{'class':<12} {'share':>6} {'cue precision':>14} {'cue recall':>11}")
    for c, name in enumerate(class_names):
        print(f"{name:<12} {counts[2, c] / counts[2].sum():>6.3f} {precision[c]:>14.3f} {recall[c]:>11.3f}")
    verdicts = {
        "partial_activation": bool(max(recall[c] for c in objects) <= args.max_recall
                                   and min(precision[c] for c in objects) >= args.min_precision),
        "colour_falls_short": bool(upper - crf >= args.min_gap),
        "real_upper_bound": bool(upper >= args.min_upper_bound),
    }
    print(f"partial activation: object cue recall {min(recall[1:]):.3f}-{max(recall[1:]):.3f} (<= {args.max_recall})"
          f", precision {min(precision[1:]):.3f}-{max(precision[1:]):.3f} (>= {args.min_precision}): "
          f"{verdicts['partial_activation']}")
    print(f"colour falls short: CRF on the cues {crf:.3f}, upper bound {upper:.3f}, gap {upper - crf:.3f} "
          f"(>= {args.min_gap}): {verdicts['colour_falls_short']}")
    print(f"real upper bound: {upper:.3f} (>= {args.min_upper_bound}): {verdicts['real_upper_bound']}")
    print(json.dumps({
        "setting": args.setting, "seed": args.seed, "extra": args.extra,
        "cue_labelled_fraction": round(labelled, 4),
        "cue_precision": {name: round(float(precision[c]), 4) for c, name in enumerate(class_names)},
        "cue_recall": {name: round(float(recall[c]), 4) for c, name in enumerate(class_names)},
        "object_share": {name: round(float(counts[2, c] / counts[2].sum()), 4) for c, name in enumerate(class_names)},
        "crf_on_cues_miou": round(crf, 4), "upper_bound_val_miou": round(upper, 4), **verdicts}))


if __name__ == "__main__":
    main()
