"""The parameters of one synthetic identity, drawn from ``default_rng([seed, identity])``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]

CX = 56.0  # face centre line in the canonical 112x112 frame


def _palette(hex_colours: str) -> np.ndarray:
    """(N, 3) float64 RGB from ``"rrggbb rrggbb ..."``."""
    return np.array([list(bytes.fromhex(c)) for c in hex_colours.split()], dtype=np.float64)


_SKIN = _palette("ffe2c8 f1c4a2 e2ae84 c68860 a36844 74482e 4e3222")
_HAIR = _palette("161210 3a281c 644428 8c4020 ba6030 ceae70 ecd6a0 8c8a88 dedcd6")
_IRIS = _palette("5c381e 2c1e16 806234 4e7646 4676aa 76808c")
_METAL = _palette("1e1e1e 785028 bebec3 c8a046")


def _color(c: np.ndarray | Sequence[float]) -> Color:
    """A colour (3 numbers) -> a plain tuple of three floats clipped to 0..255."""
    r, g, b = (min(255.0, max(0.0, float(v))) for v in c)
    return (r, g, b)


def _scale_color(c: Color, f: float) -> Color:
    return _color((c[0] * f, c[1] * f, c[2] * f))


def _mix(a: Color, b: Color, t: float) -> Color:
    return _color([x * (1 - t) + y * t for x, y in zip(a, b, strict=True)])


@dataclass(frozen=True)
class IdentityParams:
    """All per-identity facial parameters, in the 112x112 canonical frame (pixels, degrees, RGB).

    Geometry is nominally that of an aligned ArcFace crop; colours are RGB floats 0..255.
    Discrete styles are small integers (0 = absent where it applies).
    """

    # face outline
    face_half_width: float  # half width at the widest (cheek) line
    face_top: float  # y of the top of the head
    cheek_y: float  # y of the widest line
    chin_y: float  # y of the chin
    jaw_power: float  # superellipse exponent of the lower face: ~1.5 pointed .. 3.5 square
    jaw_taper: float  # 0..0.35: how much the jaw narrows towards the chin
    ear_size: float  # ear half height
    skin: Color
    # hair
    hair_style: int  # 0 bald, 1 short, 2 long, 3 fringe, 4 side part, 5 curly
    hair_color: Color
    hair_volume: float  # thickness of the hair above the skull
    hairline: float  # y of the hairline at the centre
    # eyes
    eye_y: float
    eye_half_spacing: float  # half the distance between the eye centres
    eye_width: float
    eye_open: float  # eye height / eye width, neutral expression
    eye_tilt: float  # degrees, outer corner up when positive
    iris_ratio: float  # iris radius / eye width
    iris_color: Color
    lid_thickness: float
    # brows
    brow_gap: float  # distance above the eye centre
    brow_thickness: float
    brow_length: float
    brow_arch: float
    brow_angle: float  # degrees, inner end lower when positive
    brow_color: Color
    # nose
    nose_y: float  # y of the nose tip
    nose_width: float
    nose_style: int  # 0 nostrils + tip, 1 side line, 2 shaded bridge
    # mouth
    mouth_y: float
    mouth_width: float
    upper_lip: float
    lower_lip: float
    lip_color: Color
    # accessories and marks
    glasses: int  # 0 none, 1 round, 2 rectangular, 3 wide oval
    glasses_color: Color
    glasses_thickness: float
    glasses_size: float  # lens half size / eye width
    beard: int  # 0 none, 1 full, 2 goatee, 3 moustache, 4 stubble, 5 chin strap
    beard_color: Color
    moles: tuple[tuple[float, float, float], ...]  # (x, y, radius)
    freckles: tuple[tuple[float, float], ...]  # (x, y)
    earrings: Color | None
    forehead_lines: int


@functools.lru_cache(maxsize=16384)
def _make_identity(seed: int, identity: int) -> IdentityParams:
    """Draw the parameters of one identity from ``default_rng([seed, identity])``."""
    r = np.random.default_rng([seed, identity])
    u = r.uniform

    w = u(30.0, 40.0)
    face_top = u(3.0, 15.0)
    cheek_y = u(50.0, 62.0)
    chin_y = u(100.0, 112.0)
    skin_t = u(0.0, len(_SKIN) - 1.0)
    lo = int(min(skin_t, len(_SKIN) - 2))
    skin = _color(
        _SKIN[lo] * (1 - (skin_t - lo)) + _SKIN[lo + 1] * (skin_t - lo) + r.normal(0, 6, 3)
    )

    hair_style = int(r.choice(6, p=[0.08, 0.3, 0.22, 0.15, 0.15, 0.1]))
    hair = _HAIR[r.integers(len(_HAIR))] * u(0.8, 1.15) + r.normal(0, 10, 3)
    hair_color = _color(hair)
    hair_volume = u(8.0, 16.0) if hair_style == 5 else u(1.5, 8.0)
    hairline = face_top + u(5.0, 17.0)

    eye_y = u(47.0, 55.0)
    brow_gap = u(5.0, 10.0)
    brow_color = _mix(hair_color, (20.0, 16.0, 14.0), u(0.0, 0.6))

    nose_y = u(65.0, 78.0)
    mouth_y = float(np.clip(u(86.0, 99.0), nose_y + 10.0, chin_y - 9.0))
    lip_color = _mix(skin, (186.0, 72.0, 86.0), u(0.2, 0.6))
    lip_color = _scale_color(lip_color, u(0.75, 1.0))

    glasses = int(r.choice(4, p=[0.7, 0.12, 0.12, 0.06]))
    glasses_color = _color(_METAL[r.integers(len(_METAL))] + r.normal(0, 15, 3))
    beard = int(r.choice(6, p=[0.62, 0.1, 0.08, 0.08, 0.07, 0.05]))
    beard_color = hair_color if r.random() < 0.8 else _color(_HAIR[r.integers(len(_HAIR))])

    n_moles = int(r.choice(5, p=[0.4, 0.3, 0.15, 0.1, 0.05]))
    moles = tuple(
        (CX + u(-0.8, 0.8) * w, u(eye_y - 12.0, chin_y - 10.0), u(0.7, 1.9)) for _ in range(n_moles)
    )
    freckles: tuple[tuple[float, float], ...] = ()
    if r.random() < 0.15:
        n = int(r.integers(10, 26))
        side = np.where(r.random(n) < 0.5, -1.0, 1.0)
        xs = CX + side * u(6.0, 0.75 * w, n)
        ys = u(nose_y - 14.0, nose_y + 2.0, n)
        freckles = tuple((float(x), float(y)) for x, y in zip(xs, ys, strict=True))
    earrings = _color(_METAL[r.integers(1, len(_METAL))]) if r.random() < 0.2 else None
    forehead_lines = int(r.integers(2, 4)) if r.random() < 0.2 else 0

    return IdentityParams(
        face_half_width=w,
        face_top=face_top,
        cheek_y=cheek_y,
        chin_y=chin_y,
        jaw_power=u(1.5, 3.5),
        jaw_taper=u(0.0, 0.35),
        ear_size=u(9.0, 14.0),
        skin=skin,
        hair_style=hair_style,
        hair_color=hair_color,
        hair_volume=hair_volume,
        hairline=hairline,
        eye_y=eye_y,
        eye_half_spacing=u(15.0, 20.5),
        eye_width=u(9.0, 14.0),
        eye_open=u(0.3, 0.58),
        eye_tilt=u(-10.0, 10.0),
        iris_ratio=u(0.27, 0.4),
        iris_color=_color(_IRIS[r.integers(len(_IRIS))] + r.normal(0, 10, 3)),
        lid_thickness=u(0.6, 1.8),
        brow_gap=brow_gap,
        brow_thickness=u(1.2, 4.5),
        brow_length=u(11.0, 18.0),
        brow_arch=u(-0.5, 4.0),
        brow_angle=u(-15.0, 15.0),
        brow_color=brow_color,
        nose_y=nose_y,
        nose_width=u(8.0, 17.0),
        nose_style=int(r.integers(3)),
        mouth_y=mouth_y,
        mouth_width=u(20.0, 36.0),
        upper_lip=u(1.2, 4.0),
        lower_lip=u(1.8, 6.0),
        lip_color=lip_color,
        glasses=glasses,
        glasses_color=glasses_color,
        glasses_thickness=u(0.7, 2.0),
        glasses_size=u(0.75, 1.05),
        beard=beard,
        beard_color=beard_color,
        moles=moles,
        freckles=freckles,
        earrings=earrings,
        forehead_lines=forehead_lines,
    )
