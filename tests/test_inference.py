"""Test-time prediction against a direct computation: every scale's and the mirrored pass's scores summed, one
softmax, features at scale 1, and absent classes removed with the rest renormalised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dgcn.inference import predict, restrict_to_classes
from dgcn.models.segmenter import SegmentationOutput


class PixelNet(torch.nn.Module):
    """Scores by a 1x1 convolution (each pixel on its own, so mirroring commutes with it); features: the input's
    first two channels, shifted by the input's width (so each scale's features differ)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        return SegmentationOutput(scores=self.conv(x), features=x[:, :2] + x.shape[-1])


def _image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 8, 12) * 4  # no symmetry: a mirrored pass that is not flipped back shows


def _summed_scores(model: PixelNet, x: torch.Tensor, scales: list[float], size: tuple[int, int],
                   mean_of_softmax: bool = False) -> torch.Tensor:
    """The published combination (evaluate.py:115-120): the sum over scales of the scores upsampled to `size`, no
    mirror; mean_of_softmax: the mean of each scale's softmax instead (our former one)."""
    height, width = x.shape[-2:]
    total = torch.zeros(len(x), 4, *size)
    for scale in scales:
        scaled = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bilinear",
                               align_corners=False)
        scores = F.interpolate(model(scaled).scores, size=size, mode="bilinear", align_corners=False)
        total += scores.softmax(dim=1) / len(scales) if mean_of_softmax else scores
    return total


def test_the_scales_scores_are_summed_then_one_softmax_and_features_come_from_scale_one() -> None:
    model, x = PixelNet(), _image()
    scales = [1.5, 1.0, 0.5]  # scale 1 neither first nor last
    prediction = predict(model, x, scales=scales, flip=False)
    assert prediction.probs.shape == (2, 4, 8, 12)
    torch.testing.assert_close(prediction.probs, _summed_scores(model, x, scales, (8, 12)).softmax(dim=1))
    mean_of_softmax = _summed_scores(model, x, scales, (8, 12), mean_of_softmax=True)
    assert not torch.allclose(prediction.probs, mean_of_softmax, atol=1e-3)
    assert not torch.allclose(prediction.probs, _summed_scores(model, x, [0.5], (8, 12)).softmax(dim=1), atol=1e-3)
    assert torch.equal(prediction.features, x[:, :2] + 12)


def test_mirrored_pass_is_flipped_back_and_its_scores_added() -> None:
    model, x = PixelNet(), _image()
    # the network commutes with mirroring, so the mirrored pass flipped back adds the plain scores once more
    mirrored = predict(model, x, scales=[1.0, 0.5], flip=True, size=(5, 7))
    plain = predict(model, x, scales=[1.0, 0.5], flip=False, size=(5, 7))
    torch.testing.assert_close(mirrored.probs, (2 * _summed_scores(model, x, [1.0, 0.5], (5, 7))).softmax(dim=1))
    assert torch.equal(mirrored.features, plain.features)  # the unmirrored half only
    scores = _summed_scores(model, x, [1.0, 0.5], (5, 7))
    unflipped = (scores + scores.flip(-1)).softmax(dim=1)  # what a mirrored pass left mirrored would give
    assert not torch.allclose(mirrored.probs, unflipped, atol=1e-3)


def test_absent_classes_are_removed_and_the_rest_renormalised() -> None:
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]).T.reshape(1, 3, 1, 2)
    restricted = restrict_to_classes(probs, torch.tensor([[1, 0, 1]]))
    expected = torch.tensor([[0.25, 0.0, 0.75], [2 / 3, 0.0, 1 / 3]]).T.reshape(1, 3, 1, 2)
    torch.testing.assert_close(restricted, expected)


@pytest.mark.parametrize("flip", [False, True])
def test_probabilities_sum_to_one(flip: bool) -> None:
    probs = predict(PixelNet(), _image(), scales=[0.75, 1.0], flip=flip).probs
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 8, 12))
