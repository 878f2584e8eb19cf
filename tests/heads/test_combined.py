import math

import heads_reference as ref
import pytest
import torch

from facerec.heads import ArcFaceHead, CombinedMarginHead, CosFaceHead


def _logits_and_grads(head, x, W, y):
    x = x.detach().clone().requires_grad_()
    W = W.detach().clone().requires_grad_()
    out = ref.run_ours(head, x, W, y)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    gx, gw = torch.autograd.grad((out * g).sum(), (x, W))
    return out, gx, gw


@pytest.mark.parametrize(
    ("margins", "other"),
    [((1.0, 0.5, 0.0), ArcFaceHead(6, 9, margin=0.5)), ((1.0, 0.0, 0.35), CosFaceHead(6, 9))],
)
def test_reduces_exactly(margins, other):
    x, W, y = ref.sample(12, 6, 9, seed=4)
    with torch.no_grad():  # put one target in ArcFace's fallback region
        W[y[0]] = -x[0] + 0.05 * W[y[0]]
    combined = CombinedMarginHead(6, 9, *margins).double()
    for a, b in zip(
        _logits_and_grads(combined, x, W, y),
        _logits_and_grads(other.double(), x, W, y),
        strict=True,
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize("margins", [(1.0, 0.3, 0.2), (1.35, 0.0, 0.0), (2.0, 0.2, 0.1)])
def test_matches_loop_reference(margins):
    x, W, y = ref.sample(6, 5, 7)
    head = CombinedMarginHead(5, 7, *margins).double()
    ref.check_against(head, ref.combined(x, W, y.tolist(), *margins), x, W, y)


@pytest.mark.parametrize("margins", [(1.0, 0.3, 0.2), (2.0, 0.2, 0.1)])
def test_gradcheck(margins):
    x, W, y = ref.sample(4, 5, 6, seed=1)
    head = CombinedMarginHead(5, 6, *margins, scale=4.0).double()
    assert ref.gradcheck_head(head, x, W, y)


def test_multiplicative_margin_is_not_corrected_past_pi():
    # documented insightface behaviour: for m1 != 1 cos(m1·θ + m2) is used as is, so the target
    # rises again once m1·θ + m2 > π
    head = CombinedMarginHead(2, 2, m1=2.0, m2=0.0, scale=1.0).double()
    theta = torch.tensor([math.pi / 4, math.pi / 2, 3 * math.pi / 4], dtype=torch.float64)
    cos = torch.stack([torch.cos(theta), torch.zeros(3, dtype=torch.float64)], dim=1)
    target = head.margin(cos, torch.zeros(3, dtype=torch.long), torch.ones(3, 1))[:, 0]
    torch.testing.assert_close(target, torch.cos(2 * theta))
    assert target[2] > target[1]
