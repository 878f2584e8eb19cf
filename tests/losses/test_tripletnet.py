"""TripletNetLoss against Hoffer & Ailon's formula by loops, its gradient, and offline triplets."""

from __future__ import annotations

import math

import pytest
import torch
from mining_reference import (
    reference_distance_matrix,
    reference_triplet_loss,
    reference_triplets,
)

from facerec.errors import ConfigError, FacerecError
from facerec.losses import TripletLoss, TripletNetLoss


def pk_batch(seed: int, p: int = 4, k: int = 3, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p * k, dim, generator=g, dtype=torch.float64), torch.arange(
        p
    ).repeat_interleave(k)


def formula(d_ap: float, d_an: float) -> float:
    """‖softmax(d+, d−) − (0, 1)‖², written out."""
    e_p, e_n = math.exp(d_ap), math.exp(d_an)
    s_p, s_n = e_p / (e_p + e_n), e_n / (e_p + e_n)
    return s_p**2 + (s_n - 1.0) ** 2


def reference(x, labels, mining, distance, normalize):
    x = x.detach().double()
    if normalize:
        x = x / x.norm(dim=1, keepdim=True)
    d = reference_distance_matrix(x, distance)
    if mining == "offline":
        triplets = [(i, i + 1, i + 2) for i in range(0, len(labels), 3)]
    else:
        triplets = reference_triplets(d, labels.tolist(), mining)
    terms = [formula(d[a][p], d[a][n]) for a, p, n in triplets]
    wrong = sum(d[a][p] >= d[a][n] for a, p, n in triplets)
    return sum(terms) / len(terms), len(terms), wrong / len(terms)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
def test_value_and_stats_match_the_formula(mining: str, distance: str, normalize: bool) -> None:
    x, labels = pk_batch(0)
    x = x * 0.5
    loss_fn = TripletNetLoss(mining=mining, distance=distance, normalize=normalize)
    value = loss_fn(x, labels)
    ref, count, wrong = reference(x, labels, mining, distance, normalize)
    assert value.item() == pytest.approx(ref, rel=1e-10)
    assert loss_fn.stats["num_valid_triplets"].item() == count
    assert loss_fn.stats["active_fraction"].item() == pytest.approx(wrong)


def test_offline_layout_and_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2, 2, 0, 1, 1, 3, 3, 3, 1])
    loss_fn = TripletNetLoss(offline="instead", normalize=False)
    ref, count, _ = reference(x, labels, "offline", "euclidean", False)
    assert loss_fn(x, labels).item() == pytest.approx(ref, rel=1e-12) and count == 4
    for fn in (TripletNetLoss(offline="instead"), *map(TripletNetLoss, ("batch_all", "semi_hard"))):
        assert torch.autograd.gradcheck(lambda e, fn=fn: fn(e, labels), (x,))
    with pytest.raises(FacerecError, match="offline_triplets"):
        loss_fn(x[:4], labels[:4])


def test_training_orders_the_triplets() -> None:
    torch.manual_seed(0)
    x, labels = pk_batch(2, p=5, k=4, dim=12)
    model = torch.nn.Linear(12, 8).double()
    loss_fn = TripletNetLoss(normalize=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.5 * first
    assert loss_fn.stats["active_fraction"].item() < 0.2


def test_triplet_loss_offline_modes() -> None:
    x, _ = pk_batch(3, p=4, k=3)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])
    instead = TripletLoss(margin=0.3, offline="instead", distance="squared_euclidean")
    xn = x / x.norm(dim=1, keepdim=True)
    d = reference_distance_matrix(xn, "squared_euclidean")
    terms = [max(0.0, d[i][i + 1] - d[i][i + 2] + 0.3) for i in range(0, 12, 3)]
    assert instead(x, labels).item() == pytest.approx(sum(terms) / 4, rel=1e-10)
    assert instead.stats["num_valid_triplets"].item() == 4
    along = TripletLoss(margin=0.3, offline="alongside", distance="squared_euclidean")
    online = reference_triplet_loss(x, labels.tolist(), "batch_hard", 0.3, "squared_euclidean")
    assert along(x, labels).item() == pytest.approx(sum(terms) / 4 + online["loss"], rel=1e-10)
    assert along.stats["offline_num_valid_triplets"].item() == 4
    assert along.stats["num_valid_triplets"].item() == online["num_triplets"]
    with pytest.raises(ConfigError, match="offline"):
        TripletLoss(offline="sometimes")
    with pytest.raises(ConfigError, match="mining"):
        TripletNetLoss(mining="offline")  # offline triplets are `offline: instead`, as above
    with pytest.raises(ConfigError, match="expected 'off' or 'instead'"):
        TripletNetLoss(offline="alongside")
    with pytest.raises(ConfigError, match="unknown semi_hard_fallback 'median'"):
        TripletNetLoss(semi_hard_fallback="median")  # at construction, as TripletLoss
