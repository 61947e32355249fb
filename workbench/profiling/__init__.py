"""Profiling: honest timing, per-layer tables, memory and cost models."""
