"""The `dense_crf` section, read by the stages that run a dense CRF (train_dgcn, crf, evaluate)."""

from __future__ import annotations

from pydantic import Field

from stages.params import Section


class DenseCRFParams(Section):
    """Full-resolution dense-CRF kernels (spec 4), shared by the crf stage, the test-time CRF and training."""

    gaussian_sxy: float = Field(gt=0)
    gaussian_compat: float = Field(ge=0)
    bilateral_sxy: float = Field(gt=0)
    bilateral_srgb: float = Field(gt=0)
    bilateral_compat: float = Field(ge=0)
    iterations: int = Field(ge=0, le=100)

    def kernels(self) -> dict[str, float]:
        """The keyword arguments of `dgcn.crf.dense_crf`."""
        return self.model_dump()
