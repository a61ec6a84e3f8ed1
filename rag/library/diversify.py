"""Keeping near-duplicate chunks (neighbours that overlap, repeated passages) out of one result.

Maximal marginal relevance: each next pick is the candidate with the best
``lam * relevance - (1 - lam) * (highest cosine to anything already picked)``.
The picked values never increase, so they double as a score that reads top-down.
A gentle ``lam`` keeps chunks on the same topic but barely moves copies of one
passage (the same file twice, a quoted paragraph), so candidates nearly equal
to a picked chunk are passed over unless nothing else is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DUPLICATE = 0.95  # cosine above which two chunks say the same thing


def mmr(
    ids: Sequence[str],
    relevance: Mapping[str, float],
    vectors: Mapping[str, Sequence[float]],
    k: int,
    lam: float,
) -> list[tuple[str, float]]:
    """Up to ``k`` (id, MMR value) pairs; ``relevance`` should lie in 0..1."""
    ids = list(ids)
    if not ids or k <= 0:
        return []
    rel = np.array([relevance[i] for i in ids])
    if lam >= 1.0:
        order = np.argsort(-rel, kind="stable")[:k]
        return [(ids[j], float(rel[j])) for j in order]
    unit = np.array([vectors[i] for i in ids], dtype=np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True) + 1e-12
    closest = np.full(len(ids), -np.inf)  # highest similarity to a picked chunk
    picked: list[tuple[str, float]] = []
    free = np.ones(len(ids), dtype=bool)
    for _ in range(min(k, len(ids))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(free, lam * rel - (1 - lam) * penalty, -np.inf)
        fresh = np.where(closest < DUPLICATE, value, -np.inf)
        j = int(np.argmax(fresh if np.isfinite(fresh).any() else value))
        # A copy picked only because nothing else is left must not outscore what came before.
        picked.append((ids[j], min(float(value[j]), picked[-1][1] if picked else np.inf)))
        free[j] = False
        closest = np.maximum(closest, unit @ unit[j])
    return picked
