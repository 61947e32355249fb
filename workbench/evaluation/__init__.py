"""Evaluation: datasets of (inputs, labels) batches, metrics and trade-off sweeps."""
