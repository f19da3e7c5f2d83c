"""The `crf` section: dense-CRF refinement of the export's evidence."""

from __future__ import annotations

from pydantic import Field

from stages.params import Section, Workers


class CRFStageParams(Section):
    """Dense-CRF refinement of the export's evidence (network probabilities and grown masks)."""

    grown_confidence: float = Field(
        ge=0.5, le=1, description="unary of a pixel the graph cut grew: probability on its label, the rest (1 - this) "
                                  "shared as the network's probabilities; every other pixel: the network's probability")
    workers: Workers
