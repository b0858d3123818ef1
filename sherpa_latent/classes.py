"""The source classes of the simulated training set, in one place for every output."""

from __future__ import annotations

__all__ = ["CLASS_NAMES", "ABSORBED_POWERLAW_CLASSES"]

CLASS_NAMES: tuple[str, ...] = (
    "AGN",
    "obscured AGN",
    "HMXB",
    "LMXB",
    "CV",
    "YSO",
    "coronal star",
    "NS/pulsar",
)
"""Class names, in the order of the integer class ids used in shards and networks."""

ABSORBED_POWERLAW_CLASSES: tuple[int, ...] = (0, 1, 2)
"""Class ids whose spectra are absorbed power laws (AGN, obscured AGN, HMXB)."""
