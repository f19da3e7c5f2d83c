"""The `graph_cut` section, read by the stages that grow cues by graph cut (train_dgcn, export)."""

from __future__ import annotations

from pydantic import Field

from dgcn.errors import InputError
from stages.params import Probability, Section


class GraphCutParams(Section):
    """Seed growth by per-class graph cut on the kNN feature graph (spec 2.3-2.4)."""

    knn_k: int = Field(ge=2)
    threshold: Probability = Field(description="grown mask used where P_c > threshold, original cue elsewhere")
    seed_capacity: float = Field(ge=0)
    network_seeds: Probability | None = Field(
        description="the cut's seeds are the cues plus the pixels where the network's P_c > this (growth from its "
                    "own confident pixels); null = the cues alone, as published")

    def check_nodes(self, nodes: int, grid: str, remedy: str) -> None:
        """InputError when the smallest grid a cut runs on (`nodes` nodes; `grid` says which) has fewer than knn_k:
        checked at a stage's start with the data's sizes, not by the kNN in the middle of the run."""
        if self.knn_k > nodes:
            raise InputError(f"graph_cut.knn_k = {self.knn_k} exceeds the {nodes} nodes of {grid}: lower "
                             f"graph_cut.knn_k or {remedy}")
