"""Typer options every stage shares: the data set's config, the shared defaults and the prepare stage's manifest."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG = typer.Option(..., help="the data set's config (pipelines/<name>.yaml): what differs from the defaults")
DEFAULTS = typer.Option(Path("params.yaml"), help="shared defaults of every section")
MANIFEST = typer.Option(..., help="the prepare stage's manifest.json of the data set")
