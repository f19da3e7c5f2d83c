"""`report`: print a data set's summary (the evaluate stage's summary.json) as a table."""

from __future__ import annotations

from pathlib import Path

import typer

from stages.runtime import read_json

ROWS = (
    ("cam_baseline_miou", "plain CAM argmax (train)"),
    ("cues_miou", "cues, on their labelled pixels (train)"),
    ("pseudo_miou", "DGCN graph-cut pseudo-labels (train)"),
    ("crf_miou", "pseudo-labels after dense CRF (train)"),
    ("dgcn_val_miou", "DGCN network, multi-scale + flip (val)"),
    ("dgcn_val_crf_miou", "DGCN network + dense CRF (val)"),
    ("val_miou", "retrained on CRF labels (val)"),
    ("upper_bound_val_miou", "fully supervised upper bound (val)"),
)


def main(summary: Path = typer.Option(..., help="the evaluate stage's summary.json of a data set")) -> None:
    """Print the stage-by-stage mIoU table and the retrained/upper-bound ratio."""
    figures = read_json(summary, "the evaluate stage's summary")
    width = max(len(text) for _, text in ROWS)
    typer.echo(f"{'stage':<{width}}  {'key':<22}  mIoU")
    typer.echo("-" * (width + 32))
    for key, text in ROWS:
        value = figures.get(key)
        typer.echo(f"{text:<{width}}  {key:<22}  {'-' if value is None else f'{value:.3f}'}")
    if figures.get("val_miou") and figures.get("upper_bound_val_miou"):
        typer.echo(f"\nval_miou / upper_bound_val_miou = {figures['val_miou'] / figures['upper_bound_val_miou']:.3f}")
