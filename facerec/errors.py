"""User-facing errors.

Every mistake a user can make (a missing path, a corrupt file, an unknown config key, a wrong
shape) is raised as :class:`FacerecError` with one sentence naming what is wrong and what was
expected. The CLI prints such errors as a single line and exits with status 2, instead of a
traceback from deep inside a library.
"""

from __future__ import annotations


class FacerecError(Exception):
    """An error caused by user input; its message is shown to the user as one line."""


class DataError(FacerecError):
    """Bad or missing data: a path, an image, a data-set file."""


class ConfigError(FacerecError):
    """A config key or value that is unknown or out of range."""
