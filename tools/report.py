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


def main(summary: Path = typer.Option(..., help="the evaluate stage's summary.json of a data set"),
         stats: Path = typer.Option(None, help="the evaluate stage's label_stats.json (default: beside the summary)"),
         ) -> None:
    """Print the stage-by-stage mIoU table and the retrained/upper-bound ratio, then what needs no mask."""
    figures = read_json(summary, "the evaluate stage's summary")
    width = max(len(text) for _, text in ROWS)
    typer.echo(f"{'stage':<{width}}  {'key':<22}  mIoU")
    typer.echo("-" * (width + 32))
    for key, text in ROWS:
        value = figures.get(key)
        typer.echo(f"{text:<{width}}  {key:<22}  {'-' if value is None else f'{value:.3f}'}")
    if figures.get("val_miou") and figures.get("upper_bound_val_miou"):
        typer.echo(f"\nval_miou / upper_bound_val_miou = {figures['val_miou'] / figures['upper_bound_val_miou']:.3f}")
    stats = summary.with_name("label_stats.json") if stats is None else stats
    if stats.is_file():
        _label_stats(read_json(stats, "the evaluate stage's label statistics"))


def _label_stats(stats: dict) -> None:
    """Which metrics count how many images (or why none), and the figures measured without masks."""
    typer.echo("\nscored on the images with a ground-truth mask:")
    for key in sorted(key for key in stats if key.endswith("_scored_images")):
        stage = key.removesuffix("_scored_images")
        reason = stats.get(f"{stage}_not_scored")
        typer.echo(f"  {stage:<12} {stats[key]} images" + (f" (not scored: {reason})" if reason else ""))
    if stats.get("upper_bound_not_scored"):
        typer.echo(f"  upper_bound  not scored: {stats['upper_bound_not_scored']}")
    if stats.get("val_classes_absent"):
        typer.echo(f"  classes absent from the scored val ground truth: {', '.join(stats['val_classes_absent'])}")
    typer.echo("\nwithout masks:")
    coverage = stats.get("cue_labelled_fraction")
    typer.echo(f"  cue coverage (grid cells with a cue)      {'-' if coverage is None else f'{coverage:.3f}'}")
    typer.echo(f"  pixels changed by the CRF                 {stats['crf_changed_fraction']:.3f}")
    typer.echo(f"  {'class':<20} {'tagged images':>14} {'CRF-label pixels':>17}")
    for name, pixels in stats["crf_label_frequency"].items():
        tagged = stats["train_tag_frequency"].get(name)
        typer.echo(f"  {name:<20} {'-' if tagged is None else f'{tagged:.3f}':>14} {pixels:>17.3f}")
