"""Stage `export`: the trained DGCN over every training image, cues grown by graph cut, labels into one Zarr store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import typer
from tqdm import tqdm

from dgcn.cues import CueStore
from dgcn.data.loading import load_stack, normalize
from dgcn.data.palette import voc_palette
from dgcn.graphcut import grow_supervision, knn_edges_batch
from dgcn.inference import predict, restrict_to_classes
from dgcn.metrics import confusion_matrix, scores
from dgcn.model_files import load_model
from dgcn.storage import LabelStoreWriter, staged_directory
from stages.manifest import Manifest, Split
from stages.params import DeviceParams, GraphCutParams, load_section, param
from stages.runtime import resolve_device, set_threads, summary, write_json


@dataclass
class ExportParams(GraphCutParams, DeviceParams):
    input_size: int = param(96, range=(32, 1024))
    scales: list[float] = param([0.75, 1.0, 1.25], range=(0.25, 4.0))
    flip: bool = param(True)
    batch_size: int = param(32, range=(1, None))
    shard_images: int = param(256, range=(1, None))


MODEL = Path("artifacts/train_dgcn/model.pt")
CUES = Path("artifacts/cues/cues.zarr")


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `export`)"),
    out: Path = typer.Option(Path("artifacts/export"), help="folder for pseudo_labels.zarr and metrics.json"),
) -> None:
    """Pseudo-labels: multi-scale + mirrored DGCN probabilities, cues grown by graph cut, upsampled to each image."""
    config = load_section(params, "export", ExportParams)
    manifest = Manifest.load()
    set_threads()
    model = load_model(MODEL, "segmenter").to(resolve_device(config.device, "export.device"))
    cue_store = CueStore(CUES)
    train = manifest.train
    train.check_store(cue_store.names, CUES, "cues")
    num_classes = len(manifest.class_names)
    pseudo_conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    network_conf = np.zeros_like(pseudo_conf)
    scored = train.has_masks()
    palette = voc_palette()[:num_classes].tolist()
    with (staged_directory(out) as folder,
          LabelStoreWriter(folder / "pseudo_labels.zarr", train.names, train.sizes, list(manifest.class_names),
                           palette, shard_images=config.shard_images) as writer):
        bar = tqdm(total=len(train.names), desc="export", leave=False)
        for start in range(0, len(train.names), config.shard_images):
            stop = min(start + config.shard_images, len(train.names))
            shard = []
            for begin in range(start, stop, config.batch_size):
                indices = range(begin, min(begin + config.batch_size, stop))
                for i, (labels, network) in zip(indices, _pseudo_labels(model, train, cue_store, indices, config),
                                                strict=True):
                    shard.append(labels)
                    if scored:
                        gt = train.dataset.mask(train.names[i])
                        pseudo_conf += confusion_matrix(gt, labels, num_classes)
                        network_conf += confusion_matrix(gt, network, num_classes)
                    bar.update()
            writer.write(start, shard)
        bar.close()
        metrics = {"pseudo_miou": round(float(scores(pseudo_conf)["miou"]), 4),
                   "network_argmax_miou": round(float(scores(network_conf)["miou"]), 4)} if scored else {}
        write_json(folder / "metrics.json", metrics)
    summary("export", images=len(train.names), **metrics)


def _pseudo_labels(model: torch.nn.Module, train: Split, cue_store: CueStore, indices: range,
                   config: ExportParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image: (graph-cut pseudo-label, plain network argmax), both (H, W) uint8 at the image's own size."""
    names = [train.names[i] for i in indices]
    x = normalize(torch.from_numpy(load_stack(train.dataset.image, names, config.input_size, desc="batch")))
    prediction = predict(model, x, scales=config.scales, flip=config.flip, size=(cue_store.grid, cue_store.grid))
    present = torch.from_numpy(cue_store.image_labels[indices.start:indices.stop])
    probs = restrict_to_classes(prediction.probs, present)
    edges = knn_edges_batch(prediction.features, k=config.knn_k)
    results = []
    for row, i in enumerate(indices):
        classes = np.flatnonzero(present[row].numpy())
        grown = grow_supervision(cue_store[i], probs[row].numpy(), classes, edges[row], threshold=config.threshold,
                                 seed_capacity=config.seed_capacity)
        size = tuple(train.sizes[i])
        both = torch.stack([torch.from_numpy(grown).float() + probs[row], probs[row]])
        up = F.interpolate(both, size=size, mode="bilinear", align_corners=False)
        up[:, present[row] == 0] = -1.0
        labels = up.argmax(dim=1).numpy().astype(np.uint8)
        results.append((labels[0], labels[1]))
    return results
