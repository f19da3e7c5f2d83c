"""DVC stages: one Typer command per module; thin wrappers that read params, call `dgcn`, write artifacts."""
