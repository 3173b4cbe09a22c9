"""Synthetic data for running the pipeline end to end where the competition data is absent."""
