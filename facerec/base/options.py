"""Option records from configs: a dataclass given as itself or as a dict (YAML), or refused."""

from __future__ import annotations

from typing import Any, TypeVar

from facerec.errors import ConfigError

T = TypeVar("T")


def coerce(value: Any, cls: type[T], key: str) -> T | None:
    """``value`` as a ``cls`` dataclass: None and instances as they are, a dict converted.

    Raises:
        ConfigError: one line naming ``key`` for an unknown key or any other type.
    """
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError as e:
            raise ConfigError(f"{key}: {e}; expected the keys of {cls.__name__}") from None
    raise ConfigError(f"{key} is {value!r}; expected a mapping of {cls.__name__}")


__all__ = ["coerce"]
