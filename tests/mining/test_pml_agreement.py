"""Agreement with pytorch-metric-learning where the definitions coincide.

* batch-hard: PML's BatchHardMiner (hardest positive = largest distance, hardest negative =
  smallest) + TripletMarginLoss with a MeanReducer (Hermans et al. average over anchors; PML's
  default AvgNonZeroReducer would average over the non-zero ones only).
* batch-all: PML's TripletMarginMiner("all") keeps every triplet with d_an − d_ap ≤ margin, and
  TripletMarginLoss's default AvgNonZeroReducer averages over the non-zero terms: our hinge
  batch-all (mean over active triplets).

PML's "cosine" is CosineSimilarity (a similarity); its margin rule relu(s_an − s_ap + α) equals
ours on the distance 1 − s. Its squared Euclidean is LpDistance(power=2).
"""

from __future__ import annotations

import pytest
import torch

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402

from facerec.losses import TripletLoss  # noqa: E402


def pml_distance(name: str) -> distances.BaseDistance:
    if name == "euclidean":
        return distances.LpDistance(normalize_embeddings=True, p=2, power=1)
    if name == "squared_euclidean":
        return distances.LpDistance(normalize_embeddings=True, p=2, power=2)
    return distances.CosineSimilarity()


def pk_batch(seed: int, p: int = 6, k: int = 4, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(p * k, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=g)]
    return x, labels


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_batch_hard_matches_pml(distance: str) -> None:
    for seed in range(3):
        x, labels = pk_batch(seed)
        x1 = x.clone().requires_grad_(True)
        x2 = x.clone().requires_grad_(True)
        ours = TripletLoss(margin=0.2, mining="batch_hard", distance=distance)(x1, labels)
        dist = pml_distance(distance)
        miner = miners.BatchHardMiner(distance=dist)
        loss_fn = losses.TripletMarginLoss(
            margin=0.2, distance=dist, reducer=reducers.MeanReducer()
        )
        theirs = loss_fn(x2, labels, miner(x2, labels))
        ours.backward()
        theirs.backward()
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-9)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_batch_all_matches_pml_all_triplets(distance: str) -> None:
    x, labels = pk_batch(11, p=5, k=3)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    loss = TripletLoss(margin=0.2, mining="batch_all", distance=distance)
    ours = loss(x1, labels)
    dist = pml_distance(distance)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="all", distance=dist)
    theirs = losses.TripletMarginLoss(margin=0.2, distance=dist)(x2, labels, miner(x2, labels))
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-9)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-7, atol=1e-10)
    assert loss.stats["num_valid_triplets"].item() == 15 * 2 * 12
