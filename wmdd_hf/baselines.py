"""Subsets of real images that a distilled set must beat, chosen with the same teacher features.

Each selector returns, per class, indices into that class's feature matrix ``(n_k, D)``; :func:`select_rows` turns
them into dataset rows with the rows kept by :class:`wmdd_hf.statistics.ClassStatistics`.
"""

from __future__ import annotations

import numpy as np

from .barycenter import squared_distances
from .statistics import ClassStatistics


def random_indices(n: int, m: int, seed: int) -> np.ndarray:
    """``m`` distinct indices out of ``n``, seeded."""
    return np.random.default_rng(seed).choice(n, size=m, replace=False)


def herding_indices(features: np.ndarray, m: int) -> np.ndarray:
    """Greedy herding (Welling 2009): each pick keeps the mean of the picked features closest to the class mean."""
    f = features.astype(np.float64)
    mu = f.mean(0)
    chosen: list[int] = []
    total = np.zeros_like(mu)
    for t in range(1, m + 1):
        gaps = ((mu - (total + f) / t) ** 2).sum(1)
        gaps[chosen] = np.inf
        j = int(np.argmin(gaps))
        chosen.append(j)
        total += f[j]
    return np.asarray(chosen)


def kcenter_indices(features: np.ndarray, m: int) -> np.ndarray:
    """Greedy k-center (farthest-point traversal) starting from the feature nearest to the class mean."""
    f = features.astype(np.float64)
    first = int(np.argmin(((f - f.mean(0)) ** 2).sum(1)))
    chosen = [first]
    closest = squared_distances(f, f[first : first + 1])[:, 0]
    for _ in range(1, m):
        j = int(np.argmax(closest))
        chosen.append(j)
        closest = np.minimum(closest, squared_distances(f, f[j : j + 1])[:, 0])
    return np.asarray(chosen)


def nearest_indices(features: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each point, the nearest feature not already taken (distinct indices)."""
    d = squared_distances(np.asarray(points), features)
    chosen: list[int] = []
    for j in range(len(points)):
        order = np.argsort(d[j])
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return np.asarray(chosen)


def select_rows(
    stats: ClassStatistics, method: str, m: int, seed: int = 0, barycenters: dict | None = None
) -> list[int]:
    """Dataset rows of ``m`` real images per class chosen by ``method``: ``random``, ``herding``, ``kcenter`` or
    ``barycenter_nearest_real`` (needs ``barycenters``: ``{class: {"positions": (m, D)}}``)."""
    rows: list[int] = []
    for k in sorted(stats.features):
        f = stats.features[k].numpy()
        if method == "random":
            idx = random_indices(len(f), m, seed * 1009 + k)
        elif method == "herding":
            idx = herding_indices(f, m)
        elif method == "kcenter":
            idx = kcenter_indices(f, m)
        elif method == "barycenter_nearest_real":
            if barycenters is None:
                raise ValueError("barycenter_nearest_real needs the barycenters.")
            idx = nearest_indices(f, barycenters[k]["positions"])
        else:
            raise ValueError(f"Unknown selection method {method!r}.")
        rows += [int(stats.rows[k][i]) for i in idx]
    return rows
