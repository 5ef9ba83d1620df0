"""Running a calibrated model on new texts: the batched early-exit engine, predict, timing, serving."""
