"""Fitting models on folds and running experiments over a protocol."""
