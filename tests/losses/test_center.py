import pytest
import torch

from facerec.errors import ConfigError, FacerecError
from facerec.losses.center import CenterLoss


def _example():
    loss = CenterLoss(3, 2, alpha=0.5)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    return loss, x, y


def test_value_gradient_and_update_against_hand_computation():
    loss, x, y = _example()
    value = loss(x, y)
    # ½·mean(‖x − c_y‖²) = ½·(1 + 9 + 2)/3
    assert value.item() == pytest.approx(2.0)
    value.backward()
    # ∂/∂x_i = (x_i − c_{y_i})/B with the centres before the update
    torch.testing.assert_close(x.grad, torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 1.0]]) / 3)
    # class 0: n = 2, Δ = ((0 − 1) + (0 − 3))/3 = −4/3 → c = 0 + 0.5·4/3 = 2/3
    # class 1: n = 1, Δ = (1 − 2)/2 = −0.5 → c = 1 + 0.25; class 2 is absent and stays
    expected = torch.tensor([[2 / 3, 0.0], [1.25, 1.25], [5.0, 5.0]])
    torch.testing.assert_close(loss.centers, expected)


def test_update_matches_per_class_loop_on_random_batch():
    g = torch.Generator().manual_seed(0)
    loss = CenterLoss(5, 3, alpha=0.3)
    with torch.no_grad():
        loss.centers.normal_(generator=g)
    before = loss.centers.clone()
    x = torch.randn(12, 3, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    loss(x, y)
    for j in range(5):
        members = x[y == j]
        delta = (before[j] - members).sum(dim=0) / (1 + len(members))
        torch.testing.assert_close(loss.centers[j], before[j] - 0.3 * delta)


def test_no_update_in_eval_and_centres_are_not_parameters():
    loss, x, y = _example()
    assert list(loss.parameters()) == []
    assert "centers" in loss.state_dict()
    loss.eval()
    loss(x, y)
    assert torch.equal(loss.centers[0], torch.zeros(2))


def test_repeated_updates_converge_to_class_means():
    g = torch.Generator().manual_seed(1)
    loss = CenterLoss(2, 4)
    means = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, -2.0, 0.0, 1.0]])
    for _ in range(200):
        y = torch.randint(0, 2, (16,), generator=g)
        loss(means[y] + 0.1 * torch.randn(16, 4, generator=g), y)
    torch.testing.assert_close(loss.centers, means, atol=0.1, rtol=0)


def test_centres_survive_state_dict_round_trip():
    loss, x, y = _example()
    loss(x, y)
    fresh = CenterLoss(3, 2)
    fresh.load_state_dict(loss.state_dict())
    assert torch.equal(fresh.centers, loss.centers)


def test_half_precision_input_gives_float32_loss():
    loss, x, y = _example()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss.eval()(x.detach().bfloat16(), y)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(2.0)


def test_bad_arguments_and_inputs():
    with pytest.raises(ConfigError, match="alpha"):
        CenterLoss(3, 2, alpha=1.5)
    with pytest.raises(ConfigError, match="num_classes"):
        CenterLoss(0, 2)
    loss = CenterLoss(3, 2)
    with pytest.raises(FacerecError, match=r"embeddings must have shape \(B, 2\)"):
        loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(FacerecError, match="labels must have shape"):
        loss(torch.randn(4, 2), torch.zeros(5, dtype=torch.long))
