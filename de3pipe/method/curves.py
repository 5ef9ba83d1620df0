"""Calibrated curves as numbers: the interpolation that evaluation's headline figures and the
report's statistics share, and the one line per strategy the report's plots draw.

A curve is a strategy's calibrated test points (achieved layer speed-up, metric) with the full
model at 1x first. Between two points it is interpolated linearly in the **mean exit layer**
(1 / speed-up): a deployable random mix of two operating points (each text sent to one or the
other with a fixed probability) has a mean exit layer, and a mean-over-examples metric, linear
in the mixing weight, so an interpolated cell is a point one could ship. Beyond the curve's ends
the end value is used; whether a curve reaches a speed-up is judged on the point estimate.
"""

from __future__ import annotations

import numpy as np

AREA_GRID = 201  # points of the trapezoid grid over the area's range
PLOT_GRID = 120  # points of a plotted mean curve over seeds


def full_model_curve(speedups: np.ndarray, metrics: np.ndarray, full: float) -> tuple[np.ndarray, np.ndarray]:
    """A strategy's calibrated points with the full model's (1x, ``full``) first."""
    return np.r_[1.0, np.asarray(speedups, float)], np.r_[full, np.asarray(metrics, float)]


def interpolate(speedups: np.ndarray, metrics: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Each column's curve (P points, any order) at the speed-ups ``at``, linear in 1 / speed-up
    between neighbouring points and flat beyond the ends: (A, B). Vectorised over columns."""
    speedups, metrics = np.asarray(speedups, float), np.asarray(metrics, float)
    layers = 1.0 / speedups  # (P, B): mean exit layer over the number of layers
    order = np.argsort(layers, axis=0, kind="stable")
    layers, metrics = np.take_along_axis(layers, order, 0), np.take_along_axis(metrics, order, 0)
    wanted = 1.0 / np.asarray(at, float)  # (A,)
    above = (layers[None, :, :] <= wanted[:, None, None]).sum(1)  # (A, B): points at or below each wanted layer
    lo = np.clip(above - 1, 0, len(layers) - 1)
    hi = np.clip(above, 0, len(layers) - 1)
    columns = np.arange(layers.shape[1])[None, :]
    x0, x1 = layers[lo, columns], layers[hi, columns]
    y0, y1 = metrics[lo, columns], metrics[hi, columns]
    width = x1 - x0
    share = np.divide(wanted[:, None] - x0, width, out=np.zeros_like(width), where=width > 0)
    return y0 + np.clip(share, 0.0, 1.0) * (y1 - y0)


def bracket(speedups: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each speed-up in ``at`` on one curve's points: whether it falls between two calibrated
    points rather than on one (an interpolated cell), and the speed-up gap between those two
    neighbours (0 on a point or beyond the curve's ends)."""
    points = np.unique(np.asarray(speedups, float))
    at = np.asarray(at, float)
    on_point = np.isclose(at[:, None], points[None, :], rtol=0, atol=1e-9).any(1)
    inside = (at > points[0]) & (at < points[-1])
    upper = np.clip(np.searchsorted(points, at), 1, len(points) - 1)
    gap = np.where(inside & ~on_point, points[upper] - points[upper - 1], 0.0)
    return inside & ~on_point, gap


def area_grid(lower: float, upper: float | None = None) -> np.ndarray:
    """The trapezoid grid over [lower, upper] (one argument: [1, lower])."""
    if upper is None:
        lower, upper = 1.0, lower
    return np.linspace(lower, upper, AREA_GRID)


def mean_over_grid(values: np.ndarray) -> np.ndarray:
    """Trapezoid mean of (G, B) values over an evenly spaced grid: (B,)."""
    return (values[1:] + values[:-1]).sum(0) / (2 * (len(values) - 1))


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One line for several seeds' curves: their mean on a common grid up to the speed-up every
    seed's curve reaches, each interpolated as above. A single curve is drawn as it is."""
    if len(curves) == 1:
        return curves[0]
    reach = min(xs.max() for xs, _ in curves)
    grid = np.linspace(1.0, reach, PLOT_GRID)
    return grid, np.mean([interpolate(xs[:, None], ys[:, None], grid)[:, 0] for xs, ys in curves], axis=0)
