"""ContrastiveLoss: Hadsell et al.'s formula, the loop reference, stats, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from mining_reference import reference_contrastive_loss

from facerec.base import distributed
from facerec.errors import ConfigError
from facerec.losses import ContrastiveLoss, MetricLoss


def batch(seed: int, b: int = 12, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, dim, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 4, (b,), generator=g)


def test_two_sample_formula() -> None:
    a = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.6, 0.0]], dtype=torch.float64)
    x = torch.cat([a, b])
    same = ContrastiveLoss(margin=1.0, normalize=False)(x, torch.tensor([3, 3]))
    diff = ContrastiveLoss(margin=1.0, normalize=False)(x, torch.tensor([3, 4]))
    assert same.item() == pytest.approx(0.5 * 0.6**2)  # (1 - Y)·½·D²
    assert diff.item() == pytest.approx(0.5 * 0.4**2)  # Y·½·max(0, m − D)²
    far = ContrastiveLoss(margin=0.5, normalize=False)(x, torch.tensor([3, 4]))
    assert far.item() == 0.0
    loose = ContrastiveLoss(margin=1.0, pos_margin=0.5, normalize=False)(x, torch.tensor([3, 3]))
    assert loose.item() == pytest.approx(0.5 * 0.1**2)


@pytest.mark.parametrize("pos_margin", [0.0, 0.3])
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_matches_the_pair_loop(distance: str, pos_margin: float) -> None:
    x, labels = batch(0)
    loss_fn = ContrastiveLoss(margin=1.2, pos_margin=pos_margin, distance=distance)
    value = loss_fn(x, labels)
    ref = reference_contrastive_loss(x, labels.tolist(), 1.2, pos_margin, distance)
    assert value.item() == pytest.approx(ref["loss"], rel=1e-10)
    s = loss_fn.stats
    assert s["num_pairs"].item() == ref["num_pairs"] == 12 * 11 // 2
    assert s["active_fraction"].item() == pytest.approx(ref["num_active"] / ref["num_pairs"])
    assert s["mean_d_pos"].item() == pytest.approx(ref["mean_d_pos"], rel=1e-10)
    assert s["mean_d_neg"].item() == pytest.approx(ref["mean_d_neg"], rel=1e-10)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    assert s["num_pos_pairs"].item() == (same.sum().item() - 12) // 2
    assert all(not t.requires_grad for t in s.values())
    assert isinstance(loss_fn, MetricLoss)


def test_gradcheck_and_duplicates() -> None:
    x, labels = batch(1, b=8, dim=3)
    x.requires_grad_(True)
    loss_fn = ContrastiveLoss(margin=1.5)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, labels), (x,), eps=1e-6, atol=1e-6)
    dup = torch.cat([x.detach(), x.detach()[:2]]).requires_grad_(True)
    ContrastiveLoss()(dup, torch.cat([labels, labels[:2]])).backward()
    assert torch.isfinite(dup.grad).all()


def test_single_sample_gives_an_attached_zero() -> None:
    x = torch.randn(1, 4, requires_grad=True)
    loss = ContrastiveLoss()(x, torch.tensor([0]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_gathered_gradient_matches_full_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = batch(2, b=10)
    full = x.clone().requires_grad_(True)
    loss_full = ContrastiveLoss()(full, labels)
    loss_full.backward()
    local = x[5:].clone().requires_grad_(True)  # rank 1 of 2
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "all_gather_with_grad", lambda t: torch.cat([x[:5], t]))
    monkeypatch.setattr(distributed, "all_gather_nograd", lambda t: torch.cat([labels[:5], t]))
    loss = ContrastiveLoss(gather=True)(local, labels[5:])
    loss.backward()
    assert loss.item() == pytest.approx(loss_full.item(), rel=1e-12)
    torch.testing.assert_close(local.grad / 2, full.grad[5:])


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="margin must be > 0"):
        ContrastiveLoss(margin=0.0)
    with pytest.raises(ConfigError, match=r"pos_margin must be in \[0, margin=1.0\)"):
        ContrastiveLoss(pos_margin=1.0)
    with pytest.raises(ConfigError, match="unknown distance"):
        ContrastiveLoss(distance="hamming")
