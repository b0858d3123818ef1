"""Benchmarks of sherpa_latent: speed, scaling and agreement with classical fits.

Run them all with ``python -m benchmarks``; see ``docs/benchmarks.md`` for the last run.
"""
