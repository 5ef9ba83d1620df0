"""Calibrated curves as numbers (de3pipe/method/curves.py): interpolation of unsorted points linear
in 1/speed-up, the marks of interpolated cells, the full model's 1x point, the trapezoid mean and
the mean line over seeds, by hand."""

import numpy as np
import pytest

from de3pipe.method.curves import (
    AREA_GRID, PLOT_GRID, area_grid, full_model_curve, interpolate, mean_curve, mean_over_grid,
)


def test_interpolate_sorts_each_column_by_speedup():
    # column 0 sorted: (1, .9), (2, .7), (4, .4); column 1 sorted: (1, .5), (1.5, .6), (3, .3); each linear
    # in 1/speed-up between its points (1.25x: 1/1.25 = 0.8 is 0.6 of the way from 1/2 to 1/1)
    speedups = np.array([[2.0, 3.0], [1.0, 1.0], [4.0, 1.5]])
    metrics = np.array([[0.7, 0.3], [0.9, 0.5], [0.4, 0.6]])
    at = np.array([1.0, 1.25, 1.5, 2.0, 3.0])
    got = interpolate(speedups, metrics, at)
    assert got.shape == (5, 2)
    assert got[:, 0] == pytest.approx([0.9, 0.82, 0.7 + 0.2 / 3, 0.7, 0.5])
    assert got[:, 1] == pytest.approx([0.5, 0.56, 0.6, 0.45, 0.3])


def test_bracket_marks_cells_between_two_points_and_their_gap():
    from de3pipe.method.curves import bracket

    interpolated, gap = bracket(np.array([1.0, 1.48, 2.0, 2.05, 3.2]), np.array([1.5, 2.0, 2.02, 3.0, 4.0]))
    assert interpolated.tolist() == [True, False, True, True, False]  # 2x sits on a point; 4x beyond the end
    assert gap == pytest.approx([0.52, 0.0, 0.05, 1.15, 0.0])


def test_interpolate_holds_the_end_values_beyond_the_curve():
    speedups, metrics = np.array([[1.5], [3.0]]), np.array([[0.8], [0.2]])
    assert interpolate(speedups, metrics, np.array([1.0, 1.5, 3.0, 5.0]))[:, 0] == pytest.approx([0.8, 0.8, 0.2, 0.2])


def test_interpolate_at_given_points_returns_them():
    rng = np.random.default_rng(0)
    speedups = rng.uniform(1, 4, (9, 3))
    metrics = rng.uniform(0, 1, (9, 3))
    for b in range(3):
        got = interpolate(speedups[:, [b]], metrics[:, [b]], speedups[:, b])
        assert got[:, 0] == pytest.approx(metrics[:, b])


def test_full_model_curve_puts_the_full_model_first():
    speedups, metrics = full_model_curve(np.array([2.0, 1.5]), [0.7, 0.8], 0.9)
    assert speedups.tolist() == [1.0, 2.0, 1.5] and metrics.tolist() == [0.9, 0.7, 0.8]
    assert speedups.dtype == metrics.dtype == np.float64
    empty = full_model_curve(np.array([]), np.array([]), 0.9)
    assert empty[0].tolist() == [1.0] and empty[1].tolist() == [0.9]


def test_area_grid():
    grid = area_grid(3.0)
    assert len(grid) == AREA_GRID == 201
    assert grid[0] == 1.0 and grid[-1] == 3.0
    assert np.diff(grid) == pytest.approx(np.full(200, 0.01))


def test_mean_over_grid_is_the_trapezoid_mean():
    # x^2 at x = 0, 1, 2: trapezoids (0+1)/2 and (1+4)/2 over two steps: mean 1.5; and a constant 7
    values = np.array([[0.0, 7.0], [1.0, 7.0], [4.0, 7.0]])
    assert mean_over_grid(values) == pytest.approx([1.5, 7.0])


def test_mean_over_grid_of_known_functions():
    grid = area_grid(3.0)
    linear = mean_over_grid((2 * grid + 1)[:, None])
    assert linear == pytest.approx([5.0])  # exact for a line: its value at the middle, 2*2+1
    square = mean_over_grid((grid**2)[:, None])
    assert square == pytest.approx([13 / 3], abs=1e-4)  # (27 - 1) / 3 / 2, up to the trapezoid error


def test_one_curve_is_drawn_as_it_is():
    curve = (np.array([1.0, 1.7, 2.9]), np.array([90.0, 85.0, 70.0]))
    xs, ys = mean_curve([curve])
    assert xs is curve[0] and ys is curve[1]


def test_two_curves_are_averaged_up_to_the_smaller_reach():
    first = (np.array([1.0, 2.0, 3.0]), np.array([10.0, 8.0, 6.0]))  # up to 2x: 6 + 4 / x
    second = (np.array([1.0, 2.0]), np.array([10.0, 6.0]))  # 2 + 8 / x, stops at 2x
    xs, ys = mean_curve([first, second])
    assert len(xs) == PLOT_GRID
    assert xs[0] == 1.0 and xs[-1] == 2.0
    assert ys == pytest.approx(4 + 6 / xs)
    assert ys[-1] == pytest.approx(7.0)


def test_mean_curve_of_three_seeds_with_kinks():
    curves = [
        (np.array([1.0, 1.5, 4.0]), np.array([9.0, 6.0, 1.0])),
        (np.array([1.0, 3.0]), np.array([9.0, 9.0])),
        (np.array([1.0, 2.0, 2.5]), np.array([9.0, 7.0, 3.0])),
    ]
    xs, ys = mean_curve(curves)
    assert xs[-1] == 2.5  # the least any seed reaches
    at_two = (4.0 + 9.0 + 7.0) / 3  # first: 1/2 lies 0.6 of the way from 1/4 to 1/1.5, so 1 + 0.6 * 5
    assert np.interp(2.0, xs, ys) == pytest.approx(at_two, abs=1e-2)
    assert ys[-1] == pytest.approx((2.8 + 9.0 + 3.0) / 3)  # first at 2.5: 1 + 0.36 * 5
