"""Seeding and constrain losses: values, closed-form gradients, and the CRF never touching autograd storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgcn import supervision
from dgcn.losses import constrain_loss, seeding_loss, smoothed_softmax

EPS = 1e-7


def scores_grad(scores: torch.Tensor, grad_probs: torch.Tensor) -> torch.Tensor:
    """Chain rule through P = (softmax(S) + eps) / (1 + C eps): dL/dS_j = s_j (g_j - sum_c g_c s_c) / (1 + C eps)."""
    soft = torch.softmax(scores, dim=1)
    inner = (grad_probs * soft).sum(dim=1, keepdim=True)
    return soft * (grad_probs - inner) / (1 + scores.shape[1] * EPS)


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, 4, 5, 6, generator=gen, dtype=torch.float64) * 2
    supervision = (torch.rand(3, 4, 5, 6, generator=gen) < 0.3).to(torch.uint8)
    supervision[1, 0] = 0  # an image without background supervision
    supervision[2, 1:] = 0  # an image without foreground supervision
    return scores, supervision


def test_smoothed_softmax_is_a_distribution_without_zeros():
    probs = smoothed_softmax(torch.tensor([[[[1000.0]], [[-1000.0]]]]))
    assert probs.min() > 0 and probs.max() < 1
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(1, 1, 1))


def test_seeding_loss_hand_value_and_empty_terms():
    probs = torch.tensor([0.5, 0.25, 0.25]).reshape(1, 3, 1, 1).repeat(2, 1, 1, 2)
    supervision = torch.zeros(2, 3, 1, 2, dtype=torch.uint8)
    supervision[0, 0, 0, 0] = 1  # image 0: bg term log 2, fg term: pairs (1, px0), (2, px1) -> log 4
    supervision[0, 1, 0, 0] = supervision[0, 2, 0, 1] = 1
    loss = seeding_loss(probs, supervision)  # image 1 has no supervision at all: contributes 0
    assert math.isclose(loss.item(), (math.log(2) + math.log(4)) / 2, rel_tol=1e-6)


def test_seeding_loss_gradient_matches_closed_form():
    scores, supervision = random_batch()
    scores.requires_grad_(True)
    seeding_loss(smoothed_softmax(scores), supervision.numpy()).backward()
    with torch.no_grad():
        probs = smoothed_softmax(scores)
        mask = supervision.double()
        counts = torch.cat([mask[:, :1].sum((1, 2, 3)), mask[:, 1:].sum((1, 2, 3))]).reshape(2, -1).t().clamp(min=1)
        weight = torch.cat(
            [mask[:, :1] / counts[:, 0, None, None, None], mask[:, 1:] / counts[:, 1, None, None, None]], 1
        )
        grad_probs = -weight / probs / scores.shape[0]
        expected = scores_grad(scores, grad_probs)
    assert torch.isfinite(scores.grad).all()
    torch.testing.assert_close(scores.grad, expected, rtol=1e-9, atol=1e-12)


def test_constrain_loss_value_and_gradient_with_clipping():
    scores, _ = random_batch()
    target = torch.softmax(
        torch.randn(scores.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4, 1
    )
    scores.requires_grad_(True)
    probs = smoothed_softmax(scores)
    loss = constrain_loss(probs, target.numpy())
    loss.backward()
    with torch.no_grad():
        ratio = target / probs
        clipped = (ratio <= 0.05) | (ratio >= 20)
        assert clipped.any() and (~clipped).any()
        expected_loss = (target * torch.log(ratio.clamp(0.05, 20))).sum(1).mean()
        pixels = scores.shape[0] * scores.shape[2] * scores.shape[3]
        grad_probs = torch.where(clipped, 0.0, -target / probs / pixels)
        expected = scores_grad(scores, grad_probs)
    torch.testing.assert_close(loss.detach(), expected_loss)
    torch.testing.assert_close(scores.grad, expected, rtol=1e-9, atol=1e-12)
    assert math.isclose(constrain_loss(target, target).item(), 0.0, abs_tol=1e-12)


def test_shape_mismatch_raises():
    probs = torch.full((1, 2, 2, 2), 0.5)
    with pytest.raises(ValueError, match="supervision"):
        seeding_loss(probs, np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="crf_probs"):
        constrain_loss(probs, np.zeros((1, 2, 2, 3)))


def test_pool_copies_probs_so_gradients_stay_correct(monkeypatch):
    # Simulate the published CRF layer, which floors probabilities in place: through a .numpy() view of the autograd
    # tensor that would corrupt the saved tensors of the backward pass.
    original = supervision.crf_images

    def clamping_crf_images(images, probs, *args):
        probs[probs < 1e-4] = 1e-4
        return original(images, probs, *args)

    monkeypatch.setattr(supervision, "crf_images", clamping_crf_images)
    scores = torch.zeros(1, 3, 4, 4)
    scores[0, 0] = 30.0
    scores.requires_grad_(True)
    probs = smoothed_softmax(scores)
    reference = probs.detach().clone()
    cues = np.zeros((1, 3, 4, 4), np.uint8)
    cues[0, 0, 0, 0] = 1
    images = np.zeros((1, 4, 4, 3), np.uint8)
    with supervision.SupervisionPool(workers=0) as pool:
        _, crf_probs = pool.submit(torch.randn(1, 8, 4, 4), probs, cues, [np.array([0, 1])], images).result()
    assert torch.equal(probs, reference)
    constrain_loss(probs, crf_probs).backward()
    grad = scores.grad.clone()
    scores.grad = None
    constrain_loss(smoothed_softmax(scores), crf_probs).backward()
    assert torch.equal(grad, scores.grad)
