"""The compiled colour-weighted median and same-surface mean (`edge_aware_kernels`) against
straightforward numpy references on small random inputs, borders and empty windows included."""

from __future__ import annotations

import numpy as np
import pytest

from appf.annotators.depth.edge_aware import smooth_subpixel, weighted_median_at


def _weights(lab: np.ndarray, y: int, x: int, yy: int, xx: int, sigma: float) -> np.float32:
    diff = lab[yy, xx] - lab[y, x]
    return np.exp(-np.float32(diff @ diff) * np.float32(1.0 / (2.0 * sigma * sigma)))


def reference_weighted_median(values, valid, lab, y, x, r, sigma):
    """Median by definition: sort the window's valid values, take the first whose cumulative
    weight reaches half the total."""
    H, W = values.shape
    vs, ws = [], []
    for yy in range(max(0, y - r), min(H, y + r + 1)):
        for xx in range(max(0, x - r), min(W, x + r + 1)):
            if valid[yy, xx]:
                vs.append(values[yy, xx])
                ws.append(_weights(lab, y, x, yy, xx, sigma))
    vs, ws = np.array(vs, np.float32), np.array(ws, np.float32)
    if not len(vs) or ws.sum() == 0:
        return 0.0, 0.0, 0.0
    order = np.argsort(vs, kind="stable")
    cw = np.cumsum(ws[order], dtype=np.float64)
    m = vs[order][np.argmax(cw >= 0.5 * cw[-1])]
    return m, ws[np.abs(vs - m) <= 1.0].sum() / max(cw[-1], 1e-12), cw[-1]


def _scene(seed: int, h: int = 13, w: int = 17):
    rng = np.random.default_rng(seed)
    values = np.round(rng.uniform(1, 30, (h, w)) * 16).astype(np.float32) / 16
    values[rng.random((h, w)) < 0.3] = 0
    lab = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    lab[:, : w // 2] = lab[0, 0]  # a flat colour region: many equal weights
    return values, lab


@pytest.mark.parametrize("seed,radius,sigma", [(0, 1, 10.0), (1, 2, 25.0), (2, 5, 10.0),
                                               (3, 3, 80.0)])
def test_weighted_median_equals_reference(seed, radius, sigma):
    values, lab = _scene(seed)
    valid = values > 0
    ys, xs = np.nonzero(np.ones_like(valid))
    med, sup, tot = weighted_median_at(values, valid, lab, ys, xs, radius, sigma)
    for i, (y, x) in enumerate(zip(ys, xs)):
        m, s, t = reference_weighted_median(values, valid, lab, y, x, radius, sigma)
        assert med[i] == m, (y, x)
        assert sup[i] == pytest.approx(s, rel=1e-5, abs=1e-7)
        assert tot[i] == pytest.approx(t, rel=1e-5)


def test_weighted_median_of_an_empty_window_is_zero():
    values = np.zeros((5, 5), np.float32)
    med, sup, tot = weighted_median_at(values, values > 0, np.zeros((5, 5, 3), np.float32),
                                       np.array([2]), np.array([2]), 1, 10.0)
    assert (med[0], sup[0], tot[0]) == (0.0, 0.0, 0.0)


def test_weighted_median_follows_colour_not_majority():
    """A 3x3 window with 6 pixels of a far colour at 9 px and 3 of the centre's colour at 2 px:
    the colour weights make the minority win."""
    values = np.array([[2, 9, 9], [2, 9, 9], [2, 9, 9]], np.float32)
    lab = np.zeros((3, 3, 3), np.float32)
    lab[:, 1:] = 200
    lab[1, 1] = 0  # the centre has the colour of the left column
    values[1, 1] = 2
    med, _, _ = weighted_median_at(values, values > 0, lab, np.array([1]), np.array([1]), 1, 10.0)
    assert med[0] == 2


def reference_same_surface_mean(values, lab, r, sigma, tol):
    H, W = values.shape
    out = values.copy()
    for y in range(H):
        for x in range(W):
            if values[y, x] <= 0:
                continue
            num = den = 0.0
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    yy, xx = min(max(y + dy, 0), H - 1), min(max(x + dx, 0), W - 1)
                    nv = values[yy, xx]
                    if nv > 0 and abs(nv - values[y, x]) <= tol:
                        w = _weights(lab, y, x, yy, xx, sigma)
                        num += float(w * nv)
                        den += float(w)
            out[y, x] = num / den
    return out


@pytest.mark.parametrize("seed,radius,sigma", [(4, 1, 10.0), (5, 2, 30.0)])
def test_smooth_subpixel_equals_reference(seed, radius, sigma):
    values, lab = _scene(seed)
    values = np.where(values > 0, 10 + (values % 2), 0).astype(np.float32)  # one surface, jitter
    got = smooth_subpixel(values, lab, radius, sigma)
    np.testing.assert_allclose(got, reference_same_surface_mean(values, lab, radius, sigma, 1.0),
                               rtol=1e-6)
    assert ((got > 0) == (values > 0)).all()
