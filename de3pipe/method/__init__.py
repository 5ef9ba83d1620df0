"""The method: exit strategies, their signals, calibration on validation, evaluation on test, metrics."""
