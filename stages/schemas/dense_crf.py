"""The `dense_crf` section, read by the stages that run a dense CRF (train_dgcn, crf, evaluate)."""

from __future__ import annotations

from pydantic import Field

from dgcn.errors import InputError
from stages.params import Section

# The narrowest kernel the native CRF (pydensecrf) survives with a margin. It divides each pixel's position (and
# colour) by the width in float32; at ~1e7 the lattice coordinates lose integer precision and it corrupts its heap
# (measured: sxy 1e-5 on a 500 x 500 image, srgb 1e-5 -> "double free or corruption"). At 0.1 a 10^4-pixel side
# gives 1e5, a hundredfold margin; a kernel that narrow spans less than a pixel, so no useful value is refused.
MIN_WIDTH = 0.1
# The widest compatibility weight: published 3 and 10; float32 energies overflow near 1e38 (1e300 gave NaN).
MAX_COMPAT = 1000.0


class DenseCRFParams(Section):
    """Full-resolution dense-CRF kernels (spec 4), shared by the crf stage, the test-time CRF and training."""

    gaussian_sxy: float = Field(ge=MIN_WIDTH, description="pixels")
    gaussian_compat: float = Field(ge=0, le=MAX_COMPAT)
    bilateral_sxy: float = Field(ge=MIN_WIDTH, description="pixels")
    bilateral_srgb: float = Field(ge=MIN_WIDTH, description="colour levels (0..255)")
    bilateral_compat: float = Field(ge=0, le=MAX_COMPAT)
    iterations: int = Field(ge=0, le=100)

    def kernels(self) -> dict[str, float]:
        """The keyword arguments of `dgcn.crf.dense_crf`."""
        return self.model_dump()

    def check_scale(self, scale: float, where: str) -> None:
        """InputError naming `where` when `scale` x a spatial width falls below MIN_WIDTH (the training-time CRF
        scales both sxy to its feature grid)."""
        for name in ("gaussian_sxy", "bilateral_sxy"):
            width = getattr(self, name) * scale
            if width < MIN_WIDTH:
                raise InputError(f"{where} x dense_crf.{name} = {width:.3g} pixels is narrower than {MIN_WIDTH}, the "
                                 f"narrowest kernel the dense CRF survives: raise {where}")
