"""Farthest point sampling: exactness, coverage, determinism, padding, duplicates, errors."""

import numpy as np
import pytest

from appf.transforms.fps import FpsResult, farthest_point_sample, unique_point_indices
from appf.transforms.metrics import chamfer_distance, coverage_radius


def reference_fps(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Textbook greedy FPS (numpy, float64)."""
    p = points.astype(np.float64)
    sel = [start]
    dist = np.linalg.norm(p - p[start], axis=1)
    for _ in range(n - 1):
        i = int(np.argmax(dist))
        sel.append(i)
        dist = np.minimum(dist, np.linalg.norm(p - p[i], axis=1))
    return np.array(sel)


def _cloud(m=3000, seed=0):
    rng = np.random.default_rng(seed)
    plane = np.c_[rng.uniform(0, 1, (m, 2)), np.zeros(m)]
    box = rng.uniform(0.3, 0.5, (m // 3, 3))
    return np.concatenate([plane, box]).astype(np.float32)


def test_exact_equals_reference_greedy():
    pts = np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32)
    res = farthest_point_sample(pts, 32, method="exact")
    assert isinstance(res, FpsResult)
    assert res.indices.dtype == np.int64 and res.indices.shape == (32,)
    assert res.indices[0] == 0  # documented start rule
    np.testing.assert_array_equal(res.indices, reference_fps(pts, 32))
    assert res.n_real == 32


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_coverage_close_to_exact(method):
    pts = _cloud()
    ref = pts[reference_fps(pts, 128)]
    res = farthest_point_sample(pts, 128, method=method)
    sample = pts[res.indices]
    assert len(np.unique(res.indices)) == 128
    r_ref, r = coverage_radius(pts, ref), coverage_radius(pts, sample)
    assert r <= 1.25 * r_ref
    assert chamfer_distance(pts, sample) <= 1.1 * chamfer_distance(pts, ref)
    # a random subset covers much worse: the check can fail
    rnd = pts[np.random.default_rng(0).choice(len(pts), 128, replace=False)]
    assert coverage_radius(pts, rnd) > 1.25 * r_ref


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_deterministic(method):
    pts = _cloud(seed=5)
    a = farthest_point_sample(pts, 256, method=method)
    b = farthest_point_sample(pts.copy(), 256, method=method)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_padding_repeats_real_points(method):
    pts = np.random.default_rng(1).uniform(size=(10, 3))
    res = farthest_point_sample(pts, 25, method=method)
    assert res.n_real == 10
    assert res.indices.shape == (25,)
    first = res.indices[:10]
    assert sorted(first) == list(range(10))  # every real point once ...
    np.testing.assert_array_equal(res.indices[10:20], first)  # ... then cycling through them
    np.testing.assert_array_equal(res.indices[20:], first[:5])


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_duplicates_removed_first(method):
    base = np.random.default_rng(2).uniform(size=(30, 3)).astype(np.float32)
    pts = np.concatenate([base, np.zeros((500, 3), np.float32), base[:7], -np.zeros((3, 3), np.float32)])
    res = farthest_point_sample(pts, 64, method=method)
    assert res.n_real == 31  # 30 distinct + the origin (+0.0 and -0.0 are the same point)
    sel = pts[res.indices[: res.n_real]]
    assert len(np.unique(sel, axis=0)) == 31
    # only first occurrences are used
    assert set(res.indices.tolist()) <= set(range(31))
    np.testing.assert_array_equal(unique_point_indices(pts), np.arange(31))


def test_single_point_and_exact_n():
    res = farthest_point_sample(np.array([[1.0, 2.0, 3.0]]), 4)
    np.testing.assert_array_equal(res.indices, [0, 0, 0, 0])
    assert res.n_real == 1
    pts = np.random.default_rng(4).uniform(size=(64, 3))
    res = farthest_point_sample(pts, 64, method="fast")
    assert sorted(res.indices.tolist()) == list(range(64)) and res.n_real == 64


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        farthest_point_sample(np.zeros((0, 3)), 16)
    with pytest.raises(ValueError, match="method"):
        farthest_point_sample(np.zeros((4, 3)), 2, method="random")
    with pytest.raises(ValueError, match="NaN"):
        farthest_point_sample(np.array([[0, 0, np.nan], [1, 1, 1]]), 2)
    with pytest.raises(ValueError, match="n must"):
        farthest_point_sample(np.zeros((4, 3)), 0)


def test_extra_columns_ignored():
    pts = _cloud(600)
    rgb = np.random.default_rng(0).uniform(size=(len(pts), 3)).astype(np.float32)
    a = farthest_point_sample(np.c_[pts, rgb], 50, method="exact")
    b = farthest_point_sample(pts, 50, method="exact")
    np.testing.assert_array_equal(a.indices, b.indices)


def test_chamfer_distance_known_value():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 0, 0.5]])
    # a->b: (0.5 + sqrt(1.25)) / 2 ; b->a: 0.5 ; symmetric mean of the two
    expected = 0.5 * ((0.5 + np.sqrt(1.25)) / 2 + 0.5)
    assert chamfer_distance(a, b) == pytest.approx(expected)
    assert chamfer_distance(a, a) == 0.0
