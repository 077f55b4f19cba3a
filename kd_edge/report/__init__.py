"""Evaluation reports: per-image metrics, distributions, qualitative figures."""
