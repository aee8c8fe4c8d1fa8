import numpy as np
import ot
import pytest

from wmdd_hf.barycenter import kmeans_plus_plus, w2_cost, wasserstein_barycenter


def _mixture(proportions, seed=0, n=1200, d=5):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=20.0, size=(len(proportions), d))
    counts = (np.asarray(proportions) * n).astype(int)
    points = np.concatenate([means[i] + rng.normal(scale=0.5, size=(c, d)) for i, c in enumerate(counts)])
    return points.astype(np.float32), means, counts / counts.sum()


@pytest.mark.parametrize("mode", ["learned", "uniform"])
def test_one_point_is_the_mean(mode):
    f = np.random.default_rng(1).normal(size=(300, 7)).astype(np.float32)
    r = wasserstein_barycenter(f, 1, weights=mode)
    np.testing.assert_allclose(r.positions[0], f.mean(0), rtol=1e-5, atol=1e-5)
    assert r.weights.tolist() == [1.0]


def test_learned_mode_finds_the_mixture_means_and_proportions():
    f, means, props = _mixture([0.5, 0.3, 0.2])
    r = wasserstein_barycenter(f, 3, weights="learned", seed=0)
    order = [int(np.argmin(((means - p) ** 2).sum(1))) for p in r.positions]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(r.positions, means[order], atol=0.15)
    np.testing.assert_allclose(r.weights, props[order], atol=1e-9)


def test_uniform_mode_has_equal_weights():
    f, _, _ = _mixture([0.5, 0.5])
    r = wasserstein_barycenter(f, 4, weights="uniform")
    np.testing.assert_allclose(r.weights, 0.25)


@pytest.mark.parametrize("mode", ["learned", "uniform"])
@pytest.mark.parametrize("damping", [1.0, 0.3])
def test_cost_never_increases(mode, damping):
    f = np.random.default_rng(2).normal(size=(800, 16)).astype(np.float32)
    r = wasserstein_barycenter(f, 10, weights=mode, damping=damping, iterations=25, tol=0)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(r.costs, r.costs[1:])), r.costs
    assert r.costs[-1] < r.costs[0]


def test_reported_cost_is_the_exact_w2():
    f = np.random.default_rng(3).normal(size=(500, 8)).astype(np.float32)
    for mode in ("learned", "uniform"):
        r = wasserstein_barycenter(f, 6, weights=mode)
        assert r.cost == pytest.approx(w2_cost(f, r.positions, r.weights), rel=1e-6)


def test_no_worse_than_pot_from_the_same_start():
    f = np.random.default_rng(4).normal(size=(1500, 12))
    start = kmeans_plus_plus(f, 8, seed=0)
    pot = ot.lp.free_support_barycenter([f], [np.full(len(f), 1 / len(f))], start.copy())
    pot_cost = w2_cost(f, pot)
    ours = wasserstein_barycenter(f, 8, weights="uniform", init=start, iterations=200, tol=0)
    assert ours.cost <= pot_cost * (1 + 1e-9)
    learned = wasserstein_barycenter(f, 8, weights="learned", init=start)
    assert learned.cost <= pot_cost


def test_sinkhorn_solver_runs_and_stays_close():
    f = np.random.default_rng(5).normal(size=(400, 6)).astype(np.float32)
    exact = wasserstein_barycenter(f, 5, weights="uniform", seed=0)
    entropic = wasserstein_barycenter(f, 5, weights="uniform", solver="sinkhorn", seed=0)
    assert w2_cost(f, entropic.positions) <= exact.cost * 1.1


def test_seeded_initialisation_is_deterministic():
    f = np.random.default_rng(6).normal(size=(300, 4)).astype(np.float32)
    a = wasserstein_barycenter(f, 5, seed=11)
    b = wasserstein_barycenter(f, 5, seed=11)
    np.testing.assert_array_equal(a.positions, b.positions)


def test_bad_arguments():
    f = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="learned' or 'uniform"):
        wasserstein_barycenter(f, 2, weights="free")
    with pytest.raises(ValueError, match="damping"):
        wasserstein_barycenter(f, 2, damping=0)
    with pytest.raises(ValueError, match="no features"):
        wasserstein_barycenter(np.zeros((0, 2)), 2)
