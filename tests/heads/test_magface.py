import heads_reference as ref
import pytest
import torch

from facerec.heads import MagFaceHead


def _sample():
    x, W, y = ref.sample(6, 5, 7, x_scale=25.0)
    with torch.no_grad():  # one magnitude below l_a and one above u_a
        x[0] *= 5.0 / x[0].norm()
        x[1] *= 150.0 / x[1].norm()
    return x, W, y


def test_matches_loop_reference():
    x, W, y = _sample()
    norms = x.detach().norm(dim=1)
    assert (norms < 10).any() and (norms > 110).any() and ((norms > 10) & (norms < 110)).any()
    head = MagFaceHead(5, 7).double()
    ref.check_against(head, ref.magface(x, W, y.tolist()), x, W, y)


def test_margin_is_linear_in_clipped_magnitude():
    head = MagFaceHead(4, 3)
    m = head.margin.margin_of(torch.tensor([[1.0], [10.0], [60.0], [110.0], [500.0]])).squeeze(1)
    torch.testing.assert_close(m, torch.tensor([0.45, 0.45, 0.625, 0.8, 0.8]))


def test_regularizer_against_formula():
    head = MagFaceHead(3, 2, lambda_g=35.0)
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 50.0], [200.0, 0.0, 0.0]], requires_grad=True)
    a = [10.0, 50.0, 110.0]  # 5 clipped up to l_a, 200 clipped down to u_a
    expected = 35.0 * sum(v / 110.0**2 + 1.0 / v for v in a) / 3
    reg = head.regularizer(x)
    assert reg.item() == pytest.approx(expected, rel=1e-6)
    reg.backward()
    # only the unclipped sample gets a gradient: d/dx (λ/3)·(a/u² + 1/a) along x/‖x‖
    assert torch.all(x.grad[0] == 0) and torch.all(x.grad[2] == 0)
    assert x.grad[1, 2].item() == pytest.approx(35.0 / 3 * (1 / 110.0**2 - 1 / 50.0**2))


def test_other_heads_have_no_regularizer():
    from facerec.heads import ArcFaceHead

    assert ArcFaceHead(3, 2).regularizer(torch.randn(2, 3)) is None


def test_gradcheck():
    x, W, y = _sample()
    assert ref.gradcheck_head(MagFaceHead(5, 7, scale=4.0).double(), x, W, y)
