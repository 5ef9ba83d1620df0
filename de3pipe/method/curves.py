"""Calibrated curves as numbers: the interpolation that evaluation's headline figures and the
report's statistics share, and the one line per strategy the report's plots draw.

A curve is a strategy's calibrated test points (achieved layer speed-up, metric) with the full
model at 1x first, sorted by speed-up and linearly interpolated; beyond its ends the end value
is used, and whether a curve reaches a speed-up is judged on the point estimate.
"""

from __future__ import annotations

import numpy as np

AREA_GRID = 201  # points of the trapezoid grid over the area's range
PLOT_GRID = 120  # points of a plotted mean curve over seeds


def full_model_curve(speedups: np.ndarray, metrics: np.ndarray, full: float) -> tuple[np.ndarray, np.ndarray]:
    """A strategy's calibrated points with the full model's (1x, ``full``) first."""
    return np.r_[1.0, np.asarray(speedups, float)], np.r_[full, np.asarray(metrics, float)]


def interpolate(speedups: np.ndarray, metrics: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of each column's curve (points sorted by speed-up) at ``at``: (A, B)."""
    out = np.empty((len(at), speedups.shape[1]))
    for b in range(speedups.shape[1]):
        order = np.argsort(speedups[:, b], kind="stable")
        out[:, b] = np.interp(at, speedups[order, b], metrics[order, b])
    return out


def area_grid(upper: float) -> np.ndarray:
    return np.linspace(1.0, upper, AREA_GRID)


def mean_over_grid(values: np.ndarray) -> np.ndarray:
    """Trapezoid mean of (G, B) values over an evenly spaced grid: (B,)."""
    return (values[1:] + values[:-1]).sum(0) / (2 * (len(values) - 1))


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One line for several seeds' curves (each sorted by speed-up): their mean on a common grid
    up to the speed-up every seed's curve reaches. A single curve is drawn as it is."""
    if len(curves) == 1:
        return curves[0]
    reach = min(xs.max() for xs, _ in curves)
    grid = np.linspace(1.0, reach, PLOT_GRID)
    return grid, np.mean([np.interp(grid, xs, ys) for xs, ys in curves], axis=0)
