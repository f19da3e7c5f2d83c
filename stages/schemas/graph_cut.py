"""The `graph_cut` section, read by the stages that grow cues by graph cut (train_dgcn, export)."""

from __future__ import annotations

from pydantic import Field

from stages.params import Probability, Section


class GraphCutParams(Section):
    """Seed growth by per-class graph cut on the kNN feature graph (spec 2.3-2.4)."""

    knn_k: int = Field(ge=2)
    threshold: Probability = Field(description="grown mask used where P_c > threshold, original cue elsewhere")
    seed_capacity: float = Field(ge=0)
    network_seeds: Probability | None = Field(
        description="the cut's seeds are the cues plus the pixels where the network's P_c > this (growth from its "
                    "own confident pixels); null = the cues alone, as published")
