import heads_reference as ref
import pytest
import torch

from facerec.heads import AdaFaceHead, CosFaceHead


def _norms(x):
    return x.detach().norm(dim=1).clamp(0.001, 100.0)


def test_training_step_matches_loop_reference_with_updated_stats():
    x, W, y = ref.sample(8, 5, 6, x_scale=9.0)
    head = AdaFaceHead(5, 6).double().train()
    n = _norms(x)
    mu = 0.01 * n.mean().item() + 0.99 * 20.0
    sigma = 0.01 * n.std().item() + 0.99 * 100.0
    ref.check_against(head, ref.adaface(x, W, y.tolist(), mu, sigma), x, W, y)
    assert head.margin.batch_mean.item() == pytest.approx(mu, rel=1e-12)
    assert head.margin.batch_std.item() == pytest.approx(sigma, rel=1e-12)


def test_eval_matches_reference_with_saturated_margin_scaler():
    # stats close to the norms so that ẑ spans the clip at ±1 for large h
    x, W, y = ref.sample(8, 5, 6, x_scale=9.0, seed=3)
    head = AdaFaceHead(5, 6, h=2.0).double().eval()
    n = _norms(x)
    with torch.no_grad():
        head.margin.batch_mean.fill_(n.mean().item())
        head.margin.batch_std.fill_(n.std().item())
    z = 2.0 * (n - n.mean()) / (n.std() + 1e-3)
    assert (z.abs() > 1).any() and (z.abs() < 1).any()
    expected = ref.adaface(x, W, y.tolist(), n.mean().item(), n.std().item(), h=2.0)
    ref.check_against(head, expected, x, W, y)


def test_h_zero_is_cosface():
    x, W, y = ref.sample(8, 5, 6, x_scale=9.0)
    ada = AdaFaceHead(5, 6, margin=0.4, h=0.0).double().train()
    cos = CosFaceHead(5, 6, margin=0.4).double()
    torch.testing.assert_close(ref.run_ours(ada, x, W, y), ref.run_ours(cos, x, W, y))


def test_stats_use_only_rows_with_a_target_and_need_two_for_std():
    head = AdaFaceHead(4, 3).train()
    cos = torch.zeros(3, 3)
    norms = torch.tensor([[10.0], [30.0], [500.0]])  # 500 is clipped to 100 but has label -1
    head.margin(cos, torch.tensor([0, 2, -1]), norms)
    assert head.margin.batch_mean.item() == pytest.approx(0.01 * 20.0 + 0.99 * 20.0)
    std = torch.tensor([10.0, 30.0]).std().item()
    assert head.margin.batch_std.item() == pytest.approx(0.01 * std + 0.99 * 100.0)
    head.margin(cos, torch.tensor([-1, 1, -1]), norms)  # one row: std unchanged
    assert head.margin.batch_mean.item() == pytest.approx(0.01 * 30.0 + 0.99 * 20.0)
    assert head.margin.batch_std.item() == pytest.approx(0.01 * std + 0.99 * 100.0)
    head.eval()
    head.margin(cos, torch.tensor([0, 1, 2]), norms)
    assert head.margin.batch_mean.item() == pytest.approx(0.01 * 30.0 + 0.99 * 20.0)


def test_label_minus_one_rows_are_clamped_cosines_only():
    head = AdaFaceHead(4, 3).eval()
    cos = torch.tensor([[0.9995, -0.2, 0.3], [0.1, 0.5, -1.0]])
    out = head.margin(cos, torch.tensor([-1, 1]), torch.full((2, 1), 20.0))
    torch.testing.assert_close(out[0], 64.0 * torch.tensor([0.999, -0.2, 0.3]))
    assert out[1, 2].item() == pytest.approx(64.0 * -0.999)


def test_stats_survive_state_dict_round_trip():
    head = AdaFaceHead(4, 3).train()
    head(torch.randn(5, 4) * 7, torch.tensor([0, 1, 2, 0, 1]))
    fresh = AdaFaceHead(4, 3)
    fresh.load_state_dict(head.state_dict())
    assert fresh.margin.batch_mean.item() == head.margin.batch_mean.item() != 20.0
    assert fresh.margin.batch_std.item() == head.margin.batch_std.item() != 100.0


def test_gradcheck():
    # ‖x‖ enters ẑ detached (as in the paper), so the gradient in x is deliberately not the
    # derivative of the forward: check W through the whole head, and cos with the norms fixed.
    x, W, y = ref.sample(5, 4, 6, seed=1, x_scale=9.0)
    head = AdaFaceHead(4, 6, scale=4.0, h=1.0).double().eval()
    with torch.no_grad():
        head.margin.batch_mean.fill_(18.0)
        head.margin.batch_std.fill_(5.0)
    xc = x.detach()
    assert torch.autograd.gradcheck(lambda w: ref.run_ours(head, xc, w, y), (W,))
    cos = (torch.rand(5, 6, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    norms = xc.norm(dim=1, keepdim=True)
    assert torch.autograd.gradcheck(lambda c: head.margin(c, y, norms), (cos,))
