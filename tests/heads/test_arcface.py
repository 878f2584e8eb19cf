import math

import heads_reference as ref
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ArcFaceLoss

from facerec.heads import ArcFaceHead
from facerec.heads.base import SINE_EPS, arc_target


@pytest.mark.parametrize("easy", [False, True])
def test_matches_loop_reference(easy):
    x, W, y = ref.sample(6, 5, 7)
    head = ArcFaceHead(5, 7, easy_margin=easy).double()
    expected = ref.arcface(x, W, y.tolist(), s=64.0, m=0.5, easy=easy)
    ref.check_against(head, expected, x, W, y)


def test_reference_covers_fallback_region():
    # a target nearly opposite its centre: θ_y + m > π exercises the fallback branch
    x, W, y = ref.sample(4, 3, 5, seed=3)
    with torch.no_grad():
        W[y[0]] = -x[0] + 0.05 * W[y[0]]
    head = ArcFaceHead(3, 5, margin=0.5).double()
    cos_t = F.cosine_similarity(x[0], W[y[0]], dim=0).item()
    assert math.acos(cos_t) + 0.5 > math.pi
    expected = ref.arcface(x, W, y.tolist())
    ref.check_against(head, expected, x, W, y)
    got = ref.run_ours(head, x, W, y)[0, y[0]].item()
    assert got == pytest.approx(64 * (cos_t - 0.5 * math.sin(0.5)), rel=1e-12)


def test_gradcheck():
    x, W, y = ref.sample(4, 5, 6, seed=1)
    assert ref.gradcheck_head(ArcFaceHead(5, 6, scale=4.0).double(), x, W, y)


def test_target_monotonic_in_angle_with_fallback():
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    for m in (0.3, 0.5, 1.0):
        target = arc_target(torch.cos(theta).unsqueeze(1), m).squeeze(1)
        assert torch.all(target[1:] <= target[:-1] + 1e-12), m
        # continuous branch below π − m, the fallback value above
        below = (theta < math.pi - m - 1e-6) & (theta > 1e-3)
        torch.testing.assert_close(target[below], torch.cos(theta[below] + m))
        above = theta > math.pi - m + 1e-6
        torch.testing.assert_close(target[above], torch.cos(theta[above]) - m * math.sin(m))
    # at θ = 0 the sin θ clamp (SINE_EPS) shifts the value by at most sqrt(SINE_EPS)·sin m
    at_zero = arc_target(torch.ones(1, 1, dtype=torch.float64), 0.5).item()
    assert abs(at_zero - math.cos(0.5)) <= math.sqrt(SINE_EPS) * math.sin(0.5) + 1e-15
    # without the fallback cos(θ + m) turns back up past π − m
    raw = arc_target(torch.cos(theta).unsqueeze(1), 0.5, fallback=False).squeeze(1)
    assert raw[-1] > raw[int(2000 * (math.pi - 0.5) / math.pi)]


def test_gradient_is_true_gradient_not_straight_through():
    cos = torch.tensor([[0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    logits = (
        ArcFaceHead(2, 2, scale=1.0, margin=0.5)
        .double()
        .margin(cos, torch.tensor([0]), torch.ones(1, 1, dtype=torch.float64))
    )
    logits[0, 0].backward()
    theta = math.acos(0.3)
    # d cos(θ + m) / d cos θ = sin(θ + m) / sin θ (straight-through would give 1)
    assert cos.grad[0, 0].item() == pytest.approx(math.sin(theta + 0.5) / math.sin(theta))
    assert cos.grad[0, 1].item() == 0.0


def test_gradient_finite_at_aligned_embedding():
    x = torch.randn(3, 8, requires_grad=True)
    head = ArcFaceHead(8, 4)
    with torch.no_grad():
        head.weight[0] = x[0] * 2.0  # cos θ = 1 up to rounding
    loss = F.cross_entropy(head(x, torch.tensor([0, 1, 2])), torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("margin", [0.5, 0.3])
def test_matches_pytorch_metric_learning(margin):
    x, W, y = ref.sample(16, 8, 10, seed=2)
    ours = ArcFaceHead(8, 10, margin=margin).double()
    pml = ArcFaceLoss(10, 8, margin=math.degrees(margin), scale=64).double()
    ref.assert_matches_pml(ours, pml, x, W, y)
