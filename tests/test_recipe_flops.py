"""The GPU-time estimate's operation count (tools/probes/recipe_flops.py) on a layer whose count is known."""

from __future__ import annotations

import torch

from tools.probes.recipe_flops import flops, markdown


def test_a_convolution_counts_its_multiply_adds_forward_and_backward() -> None:
    with torch.device("meta"):
        conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    forward = 2 * 3 * 8 * 3 * 3 * 10 * 12  # a multiply and an add per weight and output pixel
    assert flops(conv, 10, 12) == forward
    # backward: the weight's gradient (the input needs none), one more pass of the same size
    assert flops(conv, 10, 12, train=True) == 2 * forward


def test_the_table_turns_operations_into_hours() -> None:
    table = markdown({"retrain": 3.6e17}).splitlines()
    assert table[2] == "| retrain | 360 | 4.0 | 1.0 | 0.2 |"
    assert table[-1].startswith("| all | 360 |")
