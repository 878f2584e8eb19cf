"""Online triplet mining: distances and vectorised miners (batch-all, batch-hard, semi-hard),
pure functions of a (B, B) distance matrix and (B,) labels (:mod:`facerec.mining.triplets`).
"""

from facerec.mining.distances import DISTANCES, Distance, check_distance, pairwise_distances
from facerec.mining.triplets import (
    DEFAULT_CHUNK_ELEMENTS,
    MININGS,
    Fallback,
    Mining,
    TripletLossResult,
    Triplets,
    batch_all,
    batch_hard,
    check_mining,
    label_masks,
    mined_triplet_loss,
    semi_hard,
    triplet_loss_from_triplets,
)

__all__ = [
    "DEFAULT_CHUNK_ELEMENTS",
    "DISTANCES",
    "MININGS",
    "Distance",
    "Fallback",
    "Mining",
    "TripletLossResult",
    "Triplets",
    "batch_all",
    "batch_hard",
    "check_distance",
    "check_mining",
    "label_masks",
    "mined_triplet_loss",
    "pairwise_distances",
    "semi_hard",
    "triplet_loss_from_triplets",
]
