"""Augmentation pipelines built from YAML with albumentations.

A pipeline is a list of transforms, each a mapping with ``name`` (a class of albumentations)
and its keyword arguments, e.g.::

    augment:
      - {name: HorizontalFlip, p: 0.5}
      - {name: RandomBrightnessContrast, brightness_limit: 0.2, contrast_limit: 0.2, p: 0.5}

Augmentations act on RGB uint8 (H, W, 3) images after they are brought to the input size and
before normalisation.
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
    """Build an ``albumentations.Compose`` from a list of ``{name: ..., **kwargs}`` mappings.

    Returns None for an empty or missing list. Raises :class:`ConfigError` naming the entry
    when a name is not an albumentations transform or its arguments are rejected.
    """
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
            invalid = [str(w.message) for w in caught if "not valid" in str(w.message)]
            if invalid:
                raise ConfigError(
                    f"data.augment[{i}] ({spec['name']}): {invalid[0]}; expected arguments of "
                    f"albumentations.{spec['name']}"
                )
        except ConfigError:
            raise
        except Exception as e:  # albumentations validates with pydantic; report one line
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"data.augment[{i}] ({spec['name']}): bad arguments {kwargs}: {msg}"
            ) from None
    return A.Compose(transforms)


def seed_augment(augment: A.Compose | None, key: Sequence[int]) -> None:
    """Seed every random draw of ``augment`` from ``key``, e.g. ``(data.seed, epoch, sample)``.

    The pipeline and all its transforms share one numpy and one Python generator (set once),
    both put into a state derived from ``key`` alone: a sample's augmentation depends on nothing
    else (not on the DataLoader worker that loads it, nor on the samples loaded before it), so
    the same seed gives the same run and a resumed run draws what the uninterrupted one would
    have. Cheap enough per sample (a hash and two state assignments, no SeedSequence).
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
