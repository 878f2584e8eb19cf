"""TripletLoss: reference agreement, stats, gradients, the DDP gather scaling, errors."""

from __future__ import annotations

import pytest
import torch
from mining_reference import reference_triplet_loss

from facerec.base import distributed
from facerec.errors import ConfigError, FacerecError
from facerec.losses import MetricLoss, TripletLoss

MININGS = ["batch_all", "batch_hard", "semi_hard"]
DISTANCES = ["euclidean", "squared_euclidean", "cosine"]


def pk_batch(seed: int, p: int = 4, k: int = 3, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p * k, dim, generator=g, dtype=torch.float64)
    return x, torch.arange(p).repeat_interleave(k)


@pytest.mark.parametrize("soft_margin", [False, True])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
def test_loss_and_stats_match_the_loop_reference(
    mining: str, distance: str, soft_margin: bool
) -> None:
    x, labels = pk_batch(0)
    loss_fn = TripletLoss(margin=0.25, mining=mining, distance=distance, soft_margin=soft_margin)
    value = loss_fn(x, labels)
    ref = reference_triplet_loss(
        x, labels.tolist(), mining, 0.25, distance, normalize=True, soft_margin=soft_margin
    )
    assert value.ndim == 0
    assert value.item() == pytest.approx(ref["loss"], rel=1e-9)
    s = loss_fn.stats
    assert set(s) == {"active_fraction", "mean_d_ap", "mean_d_an", "num_valid_triplets"}
    assert all(not t.requires_grad and t.ndim == 0 for t in s.values())
    assert s["num_valid_triplets"].item() == ref["num_triplets"]
    assert s["active_fraction"].item() == pytest.approx(ref["num_active"] / ref["num_triplets"])
    assert s["mean_d_ap"].item() == pytest.approx(ref["mean_d_ap"], rel=1e-9)
    assert s["mean_d_an"].item() == pytest.approx(ref["mean_d_an"], rel=1e-9)


def test_normalize_false_uses_raw_embeddings() -> None:
    x, labels = pk_batch(1)
    x = x * 3.0
    for mining in MININGS:
        got = TripletLoss(mining=mining, normalize=False)(x, labels).item()
        ref = reference_triplet_loss(x, labels.tolist(), mining, 0.2, normalize=False)["loss"]
        assert got == pytest.approx(ref, rel=1e-9)
    # normalising makes the loss scale-invariant
    a = TripletLoss(normalize=True)(x, labels)
    b = TripletLoss(normalize=True)(x / 3.0, labels)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)


@pytest.mark.parametrize("mining", MININGS)
def test_training_steps_reduce_the_loss_and_gradients_are_finite(mining: str) -> None:
    torch.manual_seed(0)
    x, labels = pk_batch(2, p=6, k=4, dim=16)
    x = x.float()
    x[1] = x[0]  # duplicate images, as drawn with replacement
    model = torch.nn.Linear(16, 8)
    loss_fn = TripletLoss(margin=0.2, mining=mining)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        first = loss.item() if first is None else first
        opt.step()
    assert loss.item() < 0.5 * first


def test_usable_next_to_a_classification_loss() -> None:
    x, labels = pk_batch(3)
    emb = x.float().requires_grad_(True)
    head = torch.nn.Linear(8, 4).double().float()
    total = torch.nn.functional.cross_entropy(head(emb), labels) + 0.5 * TripletLoss()(emb, labels)
    total.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_half_precision_and_autocast_compute_in_float32() -> None:
    x, labels = pk_batch(6, p=6, k=4, dim=32)
    ref = TripletLoss(mining="semi_hard")(x.float(), labels)
    low = x.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = TripletLoss(mining="semi_hard")(low, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
    loss.backward()
    assert low.grad.dtype == torch.bfloat16 and torch.isfinite(low.grad.float()).all()


def fake_ddp(
    monkeypatch: pytest.MonkeyPatch, rank: int, world: int, others: list[tuple[torch.Tensor, ...]]
) -> None:
    """Pretend to be ``rank`` of ``world``; ``others`` are the other ranks' (x, labels) in order."""

    def gather(x: torch.Tensor, keep_grad: bool) -> torch.Tensor:
        which = 0 if x.is_floating_point() else 1
        parts = [o[which] for o in others]
        parts.insert(rank, x if keep_grad else x.detach())
        return torch.cat(parts)

    monkeypatch.setattr(distributed, "world_size", lambda: world)
    monkeypatch.setattr(distributed, "all_gather_with_grad", lambda x: gather(x, True))
    monkeypatch.setattr(distributed, "all_gather_nograd", lambda x: gather(x, False))


@pytest.mark.parametrize("mining", MININGS)
def test_gathered_loss_gradient_is_world_times_global_gradient(
    monkeypatch: pytest.MonkeyPatch, mining: str
) -> None:
    x, labels = pk_batch(4, p=6, k=4)
    halves = [(x[:12], labels[:12]), (x[12:], labels[12:])]
    # single process on the full batch
    full = x.clone().requires_grad_(True)
    loss_full = TripletLoss(mining=mining)(full, labels)
    loss_full.backward()
    averaged = torch.zeros_like(x)
    for rank in (0, 1):
        local = halves[rank][0].clone().requires_grad_(True)
        fake_ddp(monkeypatch, rank, 2, [h for r, h in enumerate(halves) if r != rank])
        loss_fn = TripletLoss(mining=mining, gather=True)
        loss = loss_fn(local, halves[rank][1])
        assert loss.item() == pytest.approx(loss_full.item(), rel=1e-12)  # logged value
        assert loss_fn.stats["num_valid_triplets"].item() > 0
        loss.backward()
        # DDP averages the per-rank gradients: scaled by world size, they average to the global
        averaged[rank * 12 : (rank + 1) * 12] = local.grad / 2
        # without gathering, the loss only covers the local half
        monkeypatch.undo()
    torch.testing.assert_close(averaged, full.grad, rtol=1e-10, atol=1e-12)
    assert full.grad.abs().sum() > 0


def test_gather_false_ignores_the_other_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = pk_batch(5, p=6, k=4)
    fake_ddp(monkeypatch, 0, 2, [(x[12:], labels[12:])])
    local = TripletLoss(gather=False)(x[:12], labels[:12])
    monkeypatch.undo()
    assert local.item() == pytest.approx(TripletLoss()(x[:12], labels[:12]).item(), rel=1e-12)


def test_configuration_and_shape_errors() -> None:
    with pytest.raises(ConfigError, match="unknown triplet mining 'hard'"):
        TripletLoss(mining="hard")
    with pytest.raises(ConfigError, match="unknown distance 'l1'"):
        TripletLoss(distance="l1")
    with pytest.raises(ConfigError, match="margin must be >= 0"):
        TripletLoss(margin=-0.1)
    with pytest.raises(ConfigError, match="semi_hard_fallback"):
        TripletLoss(semi_hard_fallback="median")
    loss = TripletLoss()
    with pytest.raises(FacerecError, match=r"embeddings of shape \(B, D\)"):
        loss(torch.randn(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(FacerecError, match=r"labels of shape \(B,\) = \(4,\)"):
        loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(FacerecError, match="integer class labels"):
        loss(torch.randn(4, 3), torch.zeros(4))
    assert isinstance(loss, MetricLoss)
