"""Augmentation pipelines built from YAML with albumentations.

A pipeline is a list of mappings, ``name`` (an albumentations class) and its keyword arguments,
e.g. ``[{name: HorizontalFlip, p: 0.5}]``; it acts on RGB uint8 (H, W, 3) images at the input
size, before normalisation.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np

from facerec.errors import ConfigError

DEFAULT_AUGMENT: list[dict[str, Any]] = [{"name": "HorizontalFlip", "p": 0.5}]


def build_augment(specs: Sequence[Mapping[str, Any]] | None) -> A.Compose | None:
    """An ``albumentations.Compose`` of ``{name: ..., **kwargs}`` mappings (None for none);
    :class:`ConfigError` naming the entry whose name or arguments albumentations rejects."""
    if not specs:
        return None
    transforms = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(
                f"data.augment[{i}] is {spec!r}; expected a mapping with a 'name' key, "
                "e.g. {name: HorizontalFlip, p: 0.5}"
            )
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        cls = getattr(A, str(spec["name"]), None)
        if not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            raise ConfigError(
                f"data.augment[{i}]: {spec['name']!r} is not an albumentations transform "
                "(expected a class name such as HorizontalFlip, Affine, GaussNoise)"
            )
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                transforms.append(cls(**kwargs))
        except Exception as e:  # albumentations validates with pydantic; report one line
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"data.augment[{i}] ({spec['name']}): bad arguments {kwargs}: {msg}"
            ) from None
        if invalid := [str(w.message) for w in caught if "not valid" in str(w.message)]:
            raise ConfigError(
                f"data.augment[{i}] ({spec['name']}): {invalid[0]}; expected arguments of "
                f"albumentations.{spec['name']}"
            )
    return A.Compose(transforms)


def seed_augment(augment: A.Compose | None, key: Sequence[int]) -> None:
    """Seed every random draw of ``augment`` from ``key``, e.g. ``(data.seed, epoch, sample)``.

    The transforms share one numpy and one Python generator, put into a state hashed from
    ``key`` alone, so a sample's draws depend neither on the worker nor on the loading order.
    """
    if augment is None:
        return
    rngs = getattr(augment, "_facerec_rngs", None)
    if rngs is None:
        rngs = (np.random.Generator(np.random.PCG64(0)), random.Random(0))
        augment.set_random_state(*rngs)  # every transform draws from these two from now on
        augment._facerec_rngs = rngs
    h1 = 0x243F6A8885A308D3
    for k in key:
        h1 = _splitmix64(h1 ^ (int(k) & _MASK64))
    h2 = _splitmix64(h1)
    rngs[0].bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (h1 << 64) | h2, "inc": 0xDA3E39CB94B95BDB},
        "has_uint32": 0,
        "uinteger": 0,
    }
    rngs[1].seed(h1)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's output function: a 64-bit integer hash with good avalanche."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def apply_augment(augment: A.Compose | None, image: np.ndarray) -> np.ndarray:
    """Apply a pipeline (or nothing) to an RGB uint8 (H, W, 3) image."""
    if augment is None:
        return image
    return augment(image=image)["image"]
