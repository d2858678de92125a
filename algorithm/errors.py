"""Errors with a message meant for the user (printed as one line, non-zero exit)."""


class InputError(Exception):
    """The input cannot be segmented: unreadable, wrong kind of image, not a chest CT in HU."""


class OutputError(Exception):
    """The outputs cannot be written (not writable, disk full...)."""


class ResourceError(Exception):
    """Not enough memory (or another resource) even after the fallbacks, e.g. out of memory on the CPU."""


class SettingsError(ValueError):
    """A setting that cannot run here (float16 arithmetic without CUDA...), refused before any work."""
