"""Miners against the O(B³) loop reference, hand-made cases, chunking and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mining_reference import (
    dense_batch_all_loss,
    reference_distance,
    reference_distance_matrix,
    reference_triplet_loss,
    reference_triplets,
)

from facerec.errors import ConfigError, FacerecError
from facerec.mining import (
    batch_all,
    batch_hard,
    mined_triplet_loss,
    pairwise_distances,
    semi_hard,
)

DISTANCES = ["euclidean", "squared_euclidean", "cosine"]
MININGS = ["batch_all", "batch_hard", "semi_hard"]


def make_batch(seed: int, b: int = 14, d: int = 6, classes: int = 4) -> tuple[torch.Tensor, ...]:
    """Random float64 embeddings (B, D) and labels with uneven identity sizes (some singletons)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (b,), generator=g)
    labels[-1] = classes + 7  # an identity with a single image: an anchor without positives
    return x, labels


def normalized_dist(x: torch.Tensor, distance: str) -> torch.Tensor:
    return pairwise_distances(F.normalize(x, dim=1), distance=distance)


@pytest.mark.parametrize("distance", DISTANCES)
def test_pairwise_distances_match_direct_computation(distance: str) -> None:
    x, _ = make_batch(0)
    d = pairwise_distances(x, distance=distance)
    ref = torch.tensor(reference_distance_matrix(x, distance), dtype=torch.float64)
    torch.testing.assert_close(d, ref, atol=1e-10, rtol=1e-10)
    assert torch.all(d.diagonal() == 0)
    y = torch.randn(5, 6, dtype=torch.float64)
    cross = pairwise_distances(x, y, distance=distance)
    assert cross.shape == (14, 5)
    for i, j in [(0, 0), (3, 2), (13, 4)]:
        assert cross[i, j].item() == pytest.approx(reference_distance(x[i], y[j], distance))


def test_euclidean_gradient_is_finite_for_identical_embeddings() -> None:
    x = torch.randn(4, 8, dtype=torch.float64)
    x = torch.cat([x, x[:2]]).requires_grad_(True)  # rows 4, 5 duplicate rows 0, 1
    d = pairwise_distances(x, distance="euclidean")
    assert d[0, 4].item() == pytest.approx(0.0, abs=1e-7)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unknown_distance_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown distance 'manhattan'"):
        pairwise_distances(torch.randn(3, 2), distance="manhattan")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("distance", DISTANCES)
def test_batch_hard_and_semi_hard_select_the_reference_triplets(seed: int, distance: str) -> None:
    x, labels = make_batch(seed)
    dist = normalized_dist(x, distance)
    d_ref = reference_distance_matrix(F.normalize(x, dim=1), distance)
    lab = labels.tolist()
    got = batch_hard(dist, labels)
    assert list(zip(*(t.tolist() for t in got), strict=True)) == reference_triplets(
        d_ref, lab, "batch_hard"
    )
    for fallback in ("largest", "smallest"):
        got = semi_hard(dist, labels, fallback=fallback)
        triplets = list(zip(*(t.tolist() for t in got), strict=True))
        assert triplets == reference_triplets(d_ref, lab, "semi_hard", fallback)


@pytest.mark.parametrize("soft_margin", [False, True])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
def test_mined_loss_and_stats_match_reference(
    mining: str, distance: str, soft_margin: bool
) -> None:
    for seed in (3, 4):
        x, labels = make_batch(seed)
        margin = 0.3
        res = mined_triplet_loss(
            normalized_dist(x, distance), labels, mining, margin=margin, soft_margin=soft_margin
        )
        ref = reference_triplet_loss(
            x, labels.tolist(), mining, margin=margin, distance=distance, soft_margin=soft_margin
        )
        assert ref["num_triplets"] > 0
        assert res.loss.item() == pytest.approx(ref["loss"], rel=1e-9, abs=1e-12)
        assert res.num_triplets.item() == ref["num_triplets"]
        assert res.num_active.item() == ref["num_active"]
        assert res.mean_d_ap.item() == pytest.approx(ref["mean_d_ap"], rel=1e-9)
        assert res.mean_d_an.item() == pytest.approx(ref["mean_d_an"], rel=1e-9)
        stats = res.stats()
        assert stats["active_fraction"].item() == pytest.approx(
            ref["num_active"] / ref["num_triplets"]
        )


def test_batch_all_counts_every_valid_triplet_in_a_pk_batch() -> None:
    p, k = 5, 3
    labels = torch.arange(p).repeat_interleave(k)
    x = torch.randn(p * k, 4, dtype=torch.float64)
    res = batch_all(normalized_dist(x, "euclidean"), labels, margin=0.2)
    b = p * k
    assert res.num_triplets.item() == b * (k - 1) * (b - k)


def test_semi_hard_hand_made_cases() -> None:
    # anchor 0, positive 1 at 0.5; negatives 2, 3, 4 at 0.3, 0.6, 0.9 -> the nearest beyond d_ap
    labels = torch.tensor([0, 0, 1, 2, 3])
    dist = torch.full((5, 5), 5.0)
    dist.fill_diagonal_(0.0)
    dist[0, 1:] = torch.tensor([0.5, 0.3, 0.6, 0.9])
    dist[1, [0, 2, 3, 4]] = torch.tensor([0.5, 0.2, 0.1, 0.4])  # anchor 1: all negatives < 0.5
    t = semi_hard(dist, labels)
    assert (t.anchor[:2].tolist(), t.positive[:2].tolist()) == ([0, 1], [1, 0])
    assert t.negative[0].item() == 3  # 0.6: semi-hard (0.5 < 0.6 < 0.5 + margin)
    assert t.negative[1].item() == 4  # no negative beyond 0.5: fallback to the largest d_an
    assert semi_hard(dist, labels, fallback="smallest").negative[1].item() == 3  # 0.1
    # anchors 2, 3, 4 have no positive: 2 triplets in all
    assert len(t.anchor) == 2
    res = mined_triplet_loss(dist, labels, "semi_hard", margin=0.2)
    # pair (0,1): [0.5 - 0.6 + 0.2]+ = 0.1; pair (1,0): [0.5 - 0.4 + 0.2]+ = 0.3; mean 0.2
    assert res.loss.item() == pytest.approx(0.2)
    # with a tiny margin the nearest negative beyond d_ap is outside the band: zero term
    assert mined_triplet_loss(dist, labels, "semi_hard", margin=0.05).num_active.item() == 1


def test_batch_hard_hand_made_case() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1])
    x = torch.tensor([[0.0], [1.0], [3.0], [1.5], [10.0]], dtype=torch.float64)
    dist = pairwise_distances(x, distance="euclidean")
    t = batch_hard(dist, labels)
    assert t.anchor.tolist() == [0, 1, 2, 3, 4]
    assert t.positive.tolist() == [2, 2, 0, 4, 3]  # farthest same-label
    assert t.negative.tolist() == [3, 3, 3, 1, 2]  # nearest other-label
    res = mined_triplet_loss(dist, labels, "batch_hard", margin=0.5)
    expected = [max(0, 3 - 1.5 + 0.5), max(0, 2 - 0.5 + 0.5), max(0, 3 - 1.5 + 0.5),
                max(0, 8.5 - 0.5 + 0.5), max(0, 8.5 - 7 + 0.5)]  # fmt: skip
    assert res.loss.item() == pytest.approx(sum(expected) / 5)


@pytest.mark.parametrize("soft_margin", [False, True])
def test_batch_all_gradient_equals_dense_autograd(soft_margin: bool) -> None:
    x, labels = make_batch(5, b=16)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    ours = batch_all(normalized_dist(x1, "euclidean"), labels, 0.3, soft_margin)
    dense = dense_batch_all_loss(normalized_dist(x2, "euclidean"), labels, 0.3, soft_margin)
    ours.loss.backward()
    dense.backward()
    assert ours.loss.item() == pytest.approx(dense.item(), rel=1e-12)
    assert x1.grad.abs().sum() > 0
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mining", MININGS)
def test_gradcheck_through_distances(mining: str) -> None:
    x, labels = make_batch(6, b=10, d=3)
    x.requires_grad_(True)

    def f(e: torch.Tensor) -> torch.Tensor:
        return mined_triplet_loss(normalized_dist(e, "euclidean"), labels, mining, 0.3).loss

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("mining", ["batch_all", "semi_hard"])
def test_chunking_does_not_change_the_result(mining: str) -> None:
    x, labels = make_batch(7, b=12)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    full = mined_triplet_loss(normalized_dist(x1, "euclidean"), labels, mining, 0.3)
    tiny = mined_triplet_loss(
        normalized_dist(x2, "euclidean"), labels, mining, 0.3, max_chunk_elements=1
    )  # one anchor-positive pair per chunk
    full.loss.backward()
    tiny.loss.backward()
    assert tiny.loss.item() == pytest.approx(full.loss.item(), rel=1e-12)
    assert tiny.num_active.item() == full.num_active.item()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5]], ids=["distinct", "same"])
def test_no_valid_triplet_gives_an_attached_zero(mining: str, labels: list[int]) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    res = mined_triplet_loss(pairwise_distances(x), torch.tensor(labels), mining, 0.2)
    assert res.loss.item() == 0.0
    assert res.num_triplets.item() == 0
    res.loss.backward()  # still connected to the graph
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert res.stats()["active_fraction"].item() == 0.0


def test_bfloat16_batch_all_runs_in_float32_internally() -> None:
    x, labels = make_batch(8, b=16)
    dist = normalized_dist(x.float(), "euclidean")
    ref = batch_all(dist, labels, 0.2)
    low = batch_all(dist.bfloat16(), labels, 0.2)
    assert low.loss.dtype == torch.bfloat16
    assert low.loss.float().item() == pytest.approx(ref.loss.item(), rel=2e-2)


def test_bad_inputs_are_reported() -> None:
    with pytest.raises(ConfigError, match="unknown triplet mining 'hardest'"):
        mined_triplet_loss(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), "hardest")
    with pytest.raises(FacerecError, match=r"labels must be \(B,\) = \(3,\)"):
        batch_hard(torch.zeros(3, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(FacerecError, match="must be square"):
        batch_hard(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="fallback"):
        semi_hard(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), fallback="random")
