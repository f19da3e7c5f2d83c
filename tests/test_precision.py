"""Mixed precision (`amp`): float32 outputs from the autocast wrapper, the float32 path unchanged, and a clear refusal
on the CPU, from the library and from a stage before its long part."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_stage_errors import invoke, prepare_voc_mini, set_param, workdir  # noqa: F401 (workdir: a fixture)

from dgcn.errors import InputError
from dgcn.models.registry import build_segmenter
from dgcn.models.segmenter import SegmentationOutput
from dgcn.precision import FLOAT32, Autocast, Precision


def test_off_is_the_float32_model_itself() -> None:
    model = build_segmenter("small", 3, width=4)
    assert Precision("off", torch.device("cpu")).wrap(model) is model and FLOAT32.scaler is None


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_mixed_precision_is_refused_on_the_cpu(mode: str) -> None:
    with pytest.raises(InputError, match=f"train_dgcn.amp: {mode} mixed precision runs on CUDA only, the device is "
                                         "cpu"):
        Precision(mode, torch.device("cpu"), "train_dgcn.amp")
    with pytest.raises(InputError, match="amp must be one of"):
        Precision("fp8", torch.device("cpu"))


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # no GPU here: autocast("cuda") is off
def test_the_wrapper_hands_on_float32_outputs_and_the_network_attributes() -> None:
    class Half(torch.nn.Module):
        output_stride = 8

        def forward(self, x: torch.Tensor) -> SegmentationOutput:
            return SegmentationOutput(scores=x.to(torch.bfloat16), features=x.to(torch.float16))

    wrapped = Autocast(Half(), torch.bfloat16)
    out = wrapped(torch.ones(1, 2))
    assert isinstance(out, SegmentationOutput)
    assert out.scores.dtype == out.features.dtype == torch.float32 and wrapped.output_stride == 8


def test_the_cues_stage_refuses_mixed_precision_on_the_cpu_before_training(workdir: Path,  # noqa: F811
                                                                          voc_mini: Path) -> None:
    prepare_voc_mini(voc_mini)
    set_param(workdir / "voc.yaml", "cues", device="cpu", amp="bf16", saliency_dir=None)
    code, output = invoke("cues", "--manifest", "a/prepare/manifest.json", "--out", "a/cues")
    assert code == 1
    assert "cues.amp: bf16 mixed precision runs on CUDA only, the device is cpu" in output
    assert not Path("a/cues").exists()
