"""Fitting a codec's transform to calibration keys, and measuring its quality."""
