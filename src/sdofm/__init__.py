"""sdofm: a reproducible foundation-model workflow for NASA's Solar Dynamics Observatory."""

__all__ = ["SdofmError", "__version__"]

__version__ = "0.1.0"


class SdofmError(Exception):
    """An error caused by the user's input or data, reported as one clear line."""
