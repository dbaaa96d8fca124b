"""Exceptions raised by scaler.

Every error caused by what the user gave (a config, a URL, a dataset, a
bundle) derives from :class:`InputError`, itself a :class:`ValueError`, so
that callers can catch one class and the command line can map it to exit
code 2. Errors about missing things also derive from
:class:`FileNotFoundError`, and denied access from :class:`PermissionError`.
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "ConfigError",
    "DataError",
    "BundleError",
    "DatasetNotFoundError",
    "StorageAccessError",
    "IncompleteOutputError",
]


class InputError(ValueError):
    """Something the user supplied is wrong; the message says what and how to fix it."""


class ConfigError(InputError):
    """A configuration key is unknown, missing, of the wrong type or out of range."""


class DataError(InputError):
    """The data does not fit the configuration (missing column, empty, bad values)."""


class BundleError(InputError):
    """A model bundle is missing, incomplete, altered or not a scaler bundle."""


class DatasetNotFoundError(InputError, FileNotFoundError):
    """A URL points at nothing."""


class StorageAccessError(InputError, PermissionError):
    """The store refused access to a URL."""


class IncompleteOutputError(DataError):
    """A scaler output was never committed (its write died) or lost files."""
