"""Session commands for users of ``sherpa.astro.ui``.

Use after Sherpa's own session::

    from sherpa.astro.ui import *
    from sherpa_latent.ui import *

Importing this module registers the project's XSPEC-free models with the session, so that
``wabs.gal * powlaw1d.pl``, ``bbodyrad``, ``diskbb``, ``bremss`` and ``plasma`` work by
name as Sherpa's own models do.
"""

from __future__ import annotations

from sherpa.astro import ui as _ui

from .classical import ClassicalFit, fit_absorbed_powerlaw
from .hardness import HardnessRatios
from .hardness import hardness_ratios as _hardness_ratios
from .physics import MODEL_CLASSES
from .spectrum import Spectrum, spectrum_from_pha

__all__ = ["get_spectrum", "hardness_ratios", "fit_classical"]

for _cls in MODEL_CLASSES:
    _ui.add_model(_cls)


def get_spectrum(id: int | str | None = None) -> Spectrum:
    """The session's data set ``id`` as a validated :class:`~sherpa_latent.Spectrum`.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier (default: the session's default id).
    """
    pha = _ui.get_data(id)
    return spectrum_from_pha(pha, getattr(pha, "name", None) or f"data set {id}")


def hardness_ratios(id: int | str | None = None) -> HardnessRatios:
    """CSC hardness ratios with 68% credible intervals for a data set in the session.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    """
    return _hardness_ratios(get_spectrum(id))


def fit_classical(id: int | str | None = None) -> ClassicalFit:
    """Absorbed power-law fit of a data set with C-stat/W-stat and ``conf`` intervals.

    The session's own source model, statistic and filter are left as they were.

    Parameters
    ----------
    id : int or str, optional
        Data set identifier.
    """
    return fit_absorbed_powerlaw(get_spectrum(id))
