"""sherpa_latent: response-aware learned latent spectra for Sherpa and CIAO."""

from .spectrum import ResponseRepresentation, Spectrum, load_spectrum, spectrum_from_pha

__version__ = "0.1.0"

__all__ = [
    "ResponseRepresentation",
    "Spectrum",
    "load_spectrum",
    "spectrum_from_pha",
    "__version__",
]
