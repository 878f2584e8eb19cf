"""User-facing errors: each mistake a user can make is a :class:`FacerecError` with one sentence
naming what is wrong and what was expected; the CLI prints it as one line and exits with 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


class FacerecError(Exception):
    """An error caused by user input; its message is shown to the user as one line."""


class DataError(FacerecError):
    """Bad or missing data: a path, an image, a data-set file."""


class ConfigError(FacerecError):
    """A config key or value that is unknown or out of range."""


def run_main(prog: str, run: Callable[..., object], *args: object) -> int:
    """``run(*args)`` for the CLI ``facerec prog``: the exit status, 0, or 2 after printing a
    :class:`FacerecError` as ``facerec prog: error: ...`` to stderr."""
    try:
        run(*args)
    except FacerecError as e:
        print(f"facerec {prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
