"""Stage `synthesize`: generate a synthetic data set in the VOC layout (the embedded default's images and masks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from dgcn.data.synthetic import Difficulty, generate
from dgcn.storage import atomic_output
from stages.options import CONFIG, DEFAULTS
from stages.params import load_params
from stages.runtime import summary
from stages.schemas.synthesize import SynthesizeParams


def main(
    out: Path = typer.Option(..., help="data root to write (VOC layout), e.g. data/synthetic"),
    config: Path = CONFIG,
    defaults: Path = DEFAULTS,
) -> None:
    """Generate a synthetic data set (VOC layout) from a seed."""
    settings = load_params("synthesize", SynthesizeParams, config=config, defaults=defaults)
    with atomic_output(out) as tmp:  # generated beside the root, then swapped in whole
        tmp.mkdir(parents=True)
        generate(tmp, num_train=settings.num_train, num_val=settings.num_val, image_size=settings.image_size,
                 seed=settings.seed, difficulty=Difficulty(
                     tuple(settings.object_area), tuple(settings.clutter), tuple(settings.objects), settings.style,
                     tuple(settings.part_area)))
        if out.exists():
            shutil.rmtree(out)
    summary("synthesize", root=out, train=settings.num_train, val=settings.num_val)
