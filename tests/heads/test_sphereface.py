import math

import heads_reference as ref
import pytest
import torch
from pytorch_metric_learning.losses import SphereFaceLoss

from facerec.errors import ConfigError
from facerec.heads import SphereFaceHead
from facerec.heads.sphereface import chebyshev_cos_multiple, sphereface_psi


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_chebyshev_and_psi_against_angle_formula(m):
    theta = torch.linspace(0.0, math.pi, 997, dtype=torch.float64)
    cos = torch.cos(theta)
    torch.testing.assert_close(chebyshev_cos_multiple(cos, m), torch.cos(m * theta))
    expected = []
    for t in theta.tolist():
        k = min(math.floor(t * m / math.pi), m - 1)
        expected.append((-1) ** k * math.cos(m * t) - 2 * k)
    torch.testing.assert_close(sphereface_psi(cos, m), torch.tensor(expected, dtype=torch.float64))
    psi = sphereface_psi(cos, m)
    assert torch.all(psi[1:] <= psi[:-1] + 1e-9)  # ψ decreases monotonically on [0, π]


@pytest.mark.parametrize("feature_norm", [False, True])
def test_matches_loop_reference_with_lambda(feature_norm):
    x, W, y = ref.sample(6, 5, 7, x_scale=3.0)
    head = SphereFaceHead(5, 7, feature_norm=feature_norm, scale=16.0).double().eval()
    with torch.no_grad():
        head.margin.iteration.fill_(100)
    lam = max(5.0, 1000.0 * (1 + 0.12 * 100) ** -1.0)
    expected = ref.sphereface(x, W, y.tolist(), m=4, lam=lam, feature_norm=feature_norm, s=16.0)
    ref.check_against(head, expected, x, W, y)


def test_lambda_schedule_and_iteration_buffer():
    head = SphereFaceHead(4, 3)
    x, y = torch.randn(2, 4), torch.tensor([0, 2])
    assert head.margin.current_lambda().item() == pytest.approx(1000.0)
    head.train()
    head(x, y)
    head(x, y)
    assert head.margin.iteration.item() == 2
    assert head.margin.current_lambda().item() == pytest.approx(1000.0 / (1 + 0.12 * 2))
    head.eval()
    head(x, y)
    assert head.margin.iteration.item() == 2  # evaluation does not anneal
    with torch.no_grad():
        head.margin.iteration.fill_(10**6)
    assert head.margin.current_lambda().item() == pytest.approx(5.0)  # lambda_min floor
    # the buffer survives a state_dict round trip
    fresh = SphereFaceHead(4, 3)
    fresh.load_state_dict(head.state_dict())
    assert fresh.margin.iteration.item() == 10**6
    assert torch.equal(fresh.weight, head.weight)


def test_training_step_uses_lambda_before_increment():
    x, W, y = ref.sample(3, 4, 5, x_scale=2.0)
    head = SphereFaceHead(4, 5).double().train()
    out = ref.run_ours(head, x, W, y)
    expected = ref.sphereface(x, W, y.tolist(), m=4, lam=1000.0)
    torch.testing.assert_close(out, expected)
    assert head.margin.iteration.item() == 1


def test_gradcheck():
    x, W, y = ref.sample(4, 5, 6, seed=1)
    head = SphereFaceHead(5, 6, base=2.0, lambda_min=0.5).double().eval()
    assert ref.gradcheck_head(head, x, W, y)


def test_margin_must_be_integer():
    with pytest.raises(ConfigError, match="margin"):
        SphereFaceHead(4, 3, margin=2.5)
    assert SphereFaceHead(4, 3, margin=3.0).margin.margin == 3


def test_matches_pytorch_metric_learning_without_lambda():
    x, W, y = ref.sample(16, 8, 10, seed=2, x_scale=0.5)
    ours = SphereFaceHead(8, 10, margin=4, base=0.0, lambda_min=0.0).double()
    pml = SphereFaceLoss(10, 8, margin=4, scale=1).double()
    ref.assert_matches_pml(ours, pml, x, W, y)
