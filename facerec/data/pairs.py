"""Verification pairs from labelled samples: balanced, deterministic for a seed."""

from __future__ import annotations

import numpy as np

from facerec.errors import DataError

#: First identity of every held-out synthetic set (validation during fit, ``facerec eval
#: --synthetic``, tools/synth_baseline.py): far above any training range, so never trained on.
SYNTHETIC_HELD_OUT_START = 1_000_000


def make_pairs(
    labels: np.ndarray, num_pairs: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``num_pairs`` genuine pairs (distinct samples of one identity) and ``num_pairs``
    impostor pairs (two identities) over the samples of ``labels`` (N,), seeded by ``seed``.

    Returns (idx1, idx2, issame): int64, int64 and bool (2·num_pairs,), the kinds interleaved.
    """
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    multi = [m for m in members if len(m) >= 2]
    if len(ids) < 2 or not multi:
        raise DataError(
            f"cannot build verification pairs from {len(ids)} identities: expected at least two "
            "identities and one with two or more images"
        )
    pairs = np.empty((2, 2 * num_pairs), dtype=np.int64)  # genuine in even columns
    for n in range(num_pairs):
        pairs[:, 2 * n] = rng.choice(multi[rng.integers(len(multi))], size=2, replace=False)
        impostors = rng.choice(len(members), size=2, replace=False)
        pairs[:, 2 * n + 1] = [members[c][rng.integers(len(members[c]))] for c in impostors]
    return pairs[0], pairs[1], np.arange(2 * num_pairs) % 2 == 0
