"""The renderer: :class:`SyntheticFaces` draws an identity's images (and their landmarks)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facerec.errors import ConfigError

Color = tuple[float, float, float]

CANON = 112.0  # canonical coordinate frame: the 112x112 ArcFace template
CX = 56.0  # face centre line
_SHIFT = 3  # fractional bits for OpenCV drawing (sub-pixel coordinates)
_ONE = float(1 << _SHIFT)
_SUPERSAMPLE = 2  # drawing resolution / output resolution


def _palette(hex_colours: str) -> np.ndarray:
    """(N, 3) float64 RGB from ``"rrggbb rrggbb ..."``."""
    return np.array([list(bytes.fromhex(c)) for c in hex_colours.split()], dtype=np.float64)


_SKIN = _palette("ffe2c8 f1c4a2 e2ae84 c68860 a36844 74482e 4e3222")
_HAIR = _palette("161210 3a281c 644428 8c4020 ba6030 ceae70 ecd6a0 8c8a88 dedcd6")
_IRIS = _palette("5c381e 2c1e16 806234 4e7646 4676aa 76808c")
_METAL = _palette("1e1e1e 785028 bebec3 c8a046")


def _color(c: np.ndarray | Sequence[float]) -> Color:
    """Three numbers -> a tuple of floats clipped to 0..255."""
    r, g, b = (min(255.0, max(0.0, float(v))) for v in c)
    return (r, g, b)


def _scale_color(c: Color, f: float) -> Color:
    return _color((c[0] * f, c[1] * f, c[2] * f))


def _mix(a: Color, b: Color, t: float) -> Color:
    return _color([x * (1 - t) + y * t for x, y in zip(a, b, strict=True)])


_NOISE_SIDE = 256


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed (256, 256, 3) float32 field of standard normals; images take crops of it."""
    shape = (_NOISE_SIDE, _NOISE_SIDE, 3)
    return np.random.default_rng(20240607).standard_normal(shape, dtype=np.float32)


@dataclass(frozen=True)
class IdentityParams:
    """Per-identity facial parameters in the 112x112 canonical frame (pixels, degrees, RGB
    floats 0..255); discrete styles are small integers (0 = absent where it applies)."""

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
    frac = skin_t - lo
    skin = _color(_SKIN[lo] * (1 - frac) + _SKIN[lo + 1] * frac + r.normal(0, 6, 3))

    hair_style = int(r.choice(6, p=[0.08, 0.3, 0.22, 0.15, 0.15, 0.1]))
    hair_color = _color(_HAIR[r.integers(len(_HAIR))] * u(0.8, 1.15) + r.normal(0, 10, 3))
    hair_volume = u(8.0, 16.0) if hair_style == 5 else u(1.5, 8.0)
    hairline = face_top + u(5.0, 17.0)

    eye_y = u(47.0, 55.0)
    brow_gap = u(5.0, 10.0)
    brow_color = _mix(hair_color, (20.0, 16.0, 14.0), u(0.0, 0.6))

    nose_y = u(65.0, 78.0)
    mouth_y = float(np.clip(u(86.0, 99.0), nose_y + 10.0, chin_y - 9.0))
    lip_color = _scale_color(_mix(skin, (186.0, 72.0, 86.0), u(0.2, 0.6)), u(0.75, 1.0))

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
        xs = CX + np.where(r.random(n) < 0.5, -1.0, 1.0) * u(6.0, 0.75 * w, n)
        ys = u(nose_y - 14.0, nose_y + 2.0, n)
        freckles = tuple(zip(xs.tolist(), ys.tolist(), strict=True))
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


@dataclass
class _Nuisance:
    """Per-image variation (all zero / neutral at difficulty 0)."""

    angle: float  # in-plane rotation, degrees
    scale: float
    shift: tuple[float, float]  # canonical pixels
    yaw: float  # radians
    smile: float  # -0.3 .. 1
    mouth_open: float  # 0 .. 1
    brow_raise: float  # canonical pixels
    eye_open: float  # multiplier of the neutral eye opening
    glasses_off: bool


class _Painter:
    """Draws canonical-frame (N, 2) point shapes onto a supersampled canvas under a pose.

    ``depth`` (canonical pixels in front of the face surface) enables the yaw warp; ``None``
    leaves points unwarped (the silhouette: outline, hair, ears).
    """

    def __init__(self, img: np.ndarray, m: np.ndarray, k: float, yaw: float, radius: float):
        self.img, self.m, self.k, self.yaw, self.radius = img, m, k, yaw, radius
        self.sin_yaw = math.sin(yaw)

    def transform(self, pts: np.ndarray, depth: float | None = None) -> np.ndarray:
        """(N, 2) canonical points -> (N, 2) float64 canvas points (yaw warp, then pose)."""
        if depth is not None and self.yaw != 0.0:
            pts = pts.copy()
            phi = np.arcsin(np.minimum(np.maximum((pts[:, 0] - CX) / self.radius, -1.0), 1.0))
            pts[:, 0] = CX + self.radius * np.sin(phi + self.yaw) + depth * self.sin_yaw
        return pts @ self.m[:, :2].T + self.m[:, 2]

    def tx(self, pts: np.ndarray, depth: float | None = None) -> np.ndarray:
        """(N, 2) canonical points -> (N, 1, 2) int32 fixed-point canvas points."""
        return np.round(self.transform(pts, depth) * _ONE).astype(np.int32).reshape(-1, 1, 2)

    def fill(self, pts: np.ndarray, color: Color, depth: float | None = None) -> None:
        cv2.fillPoly(self.img, [self.tx(pts, depth)], color, cv2.LINE_8, _SHIFT)

    def line(
        self, pts: np.ndarray, color: Color, thickness: float, depth: float | None = None
    ) -> None:
        t = max(1, round(thickness * self.k))
        cv2.polylines(self.img, [self.tx(pts, depth)], False, color, t, cv2.LINE_8, _SHIFT)

    def circle(self, x: float, y: float, r: float, color: Color, depth: float | None = 0.0) -> None:
        c = self.tx(np.array([[x, y]]), depth)[0, 0]
        rr = max(1, round(r * self.k * _ONE))
        cv2.circle(self.img, (int(c[0]), int(c[1])), rr, color, -1, cv2.LINE_8, _SHIFT)


def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 24, angle: float = 0.0):
    """(n, 2) points of an ellipse with half axes (ax, ay) rotated by ``angle`` degrees."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    x, y = ax * np.cos(t), ay * np.sin(t)
    if angle:
        a = math.radians(angle)
        x, y = x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)
    return np.stack([cx + x, cy + y], axis=1)


def _symmetric(half: Sequence[tuple[float, float]]) -> np.ndarray:
    """A polygon mirrored about the centre line: ``half`` (dx, y) at CX - dx, then reversed at
    CX + dx."""
    return np.array([[CX - dx, y] for dx, y in half] + [[CX + dx, y] for dx, y in half[::-1]])


def _box(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """The corners of an axis-aligned rectangle, clockwise from the top left."""
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]])


def _band(x: np.ndarray, y1: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """The closed polygon between the curves (x, y1) and (x, y2)."""
    return np.concatenate([np.stack([x, y1], 1), np.stack([x, y2], 1)[::-1]], 0)


def _mirror(pts: np.ndarray) -> np.ndarray:
    """``pts`` reflected in the centre line."""
    return pts * [-1.0, 1.0] + [2 * CX, 0.0]


def _face_outline(p: IdentityParams, n: int = 18) -> np.ndarray:
    """(4n, 2) closed outline of the face (forehead, cheeks, jaw, chin)."""
    w = p.face_half_width
    # upper half: ellipse from the top of the head to the cheek line
    v = np.linspace(1.0, 0.0, n, endpoint=False)
    y_up = p.cheek_y - v * (p.cheek_y - p.face_top)
    x_up = w * np.sqrt(1.0 - v**2)
    # lower half: tapered superellipse from the cheek line to the chin
    uu = np.linspace(0.0, 1.0, n + 1)
    y_lo = p.cheek_y + uu * (p.chin_y - p.cheek_y)
    x_lo = w * (1.0 - uu**p.jaw_power) ** (1.0 / p.jaw_power) * (1.0 - p.jaw_taper * uu)
    x_lo[-1] = 0.0
    right = np.stack([np.concatenate([x_up, x_lo]), np.concatenate([y_up, y_lo])], axis=1)
    left = right[::-1] * [-1.0, 1.0]
    pts = np.concatenate([right, left[1:-1]], axis=0)
    pts[:, 0] += CX
    return pts


def _half_width_at(p: IdentityParams, y: float) -> float:
    """Half width of the face outline at height ``y``."""
    w = p.face_half_width
    if y <= p.cheek_y:
        v = min(1.0, (p.cheek_y - y) / (p.cheek_y - p.face_top))
        return w * math.sqrt(max(0.0, 1.0 - v * v))
    uu = min(1.0, (y - p.cheek_y) / (p.chin_y - p.cheek_y))
    return w * (1.0 - uu**p.jaw_power) ** (1.0 / p.jaw_power) * (1.0 - p.jaw_taper * uu)


@dataclass(eq=False)
class SyntheticFaces:
    """A deterministic, procedurally drawn face-identity data set.

    Args:
        num_identities: number of identities (classes), ids 0..num_identities-1.
        images_per_identity: images per identity.
        size: output image side in pixels; images are RGB uint8 (size, size, 3).
        seed: seed of the whole data set (a non-negative integer).
        difficulty: scale of the per-image nuisance variation, 0..2; 0 draws canonical faces
            (frontal, neutral, evenly lit, grey background), 1 is the calibrated default.

    ``render(identity, index)`` is defined for any non-negative identity and index (held-out
    identities come from the same generator).
    """

    num_identities: int = 200
    images_per_identity: int = 20
    size: int = 112
    seed: int = 0
    difficulty: float = 1.0

    def __post_init__(self) -> None:
        for name, ok, need in (
            ("num_identities", self.num_identities >= 1, "at least 1"),
            ("images_per_identity", self.images_per_identity >= 1, "at least 1"),
            ("size", self.size >= 16, "at least 16 pixels"),
            ("seed", self.seed >= 0, "a non-negative integer"),
            ("difficulty", 0.0 <= self.difficulty <= 2.0, "between 0 and 2"),
        ):
            if not ok:
                raise ConfigError(f"{name} must be {need}, got {getattr(self, name)}")
        self.num_identities = int(self.num_identities)
        self.images_per_identity = int(self.images_per_identity)
        self.size = int(self.size)
        self.seed = int(self.seed)
        self.difficulty = float(self.difficulty)

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    @property
    def class_names(self) -> list[str]:
        """Folder-style class names, ``id_00000`` ... (index = identity label)."""
        return [f"id_{i:05d}" for i in range(self.num_identities)]

    def identity(self, i: int) -> IdentityParams:
        """Parameters of identity ``i``; depend only on (seed, i)."""
        if i < 0:
            raise IndexError(f"identity must be non-negative, got {i}")
        return _make_identity(self.seed, int(i))

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """Flat index ``i = identity * images_per_identity + index`` -> (image, identity)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} synthetic images")
        identity, index = divmod(i % n, self.images_per_identity)
        return self.render(identity, index), identity

    def _nuisance(self, r: np.random.Generator, p: IdentityParams) -> _Nuisance:
        d = self.difficulty
        u = r.uniform
        blink = r.random() < 0.1
        return _Nuisance(
            angle=d * min(15.0, max(-15.0, float(r.normal(0.0, 7.0)))),
            scale=1.0 + d * u(-0.1, 0.1),
            shift=(d * u(-4.0, 4.0), d * u(-4.0, 4.0)),
            yaw=d * math.radians(u(-14.0, 14.0)),
            smile=d * u(-0.3, 1.0),
            mouth_open=d * max(0.0, u(-0.6, 1.0)),
            brow_raise=d * u(-1.5, 3.0),
            eye_open=max(0.08, 1.0 - d * (u(0.75, 0.95) if blink else u(0.0, 0.4))),
            glasses_off=bool(p.glasses and r.random() < 0.15 * d),
        )

    def render(self, identity: int, index: int) -> np.ndarray:
        """Image ``index`` of ``identity``: RGB uint8 (size, size, 3), deterministic."""
        return self.render_with_landmarks(identity, index)[0]

    def landmarks(self, identity: int, index: int) -> np.ndarray:
        """The 5 landmarks of image ``index`` of ``identity`` (without drawing it): (5, 2) float32
        (x, y) output pixels of the eye centres, nose tip and mouth corners (image left before
        right), as :mod:`facerec.align` expects, under the image's pose and expression."""
        p, nz, _ = self._draw_state(identity, index)
        return self._landmarks(p, nz)

    def render_with_landmarks(self, identity: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`render` and :meth:`landmarks` of image ``index`` of ``identity``, together."""
        p, nz, r = self._draw_state(identity, index)
        canvas = self._background(r, self.size * _SUPERSAMPLE)
        pt = self._painter(canvas, p, nz)
        self._draw_body(pt, p, r)
        self._draw_head(pt, p, nz)
        if r.random() < 0.3 * self.difficulty:
            self._draw_occluder(pt, r)

        img = cv2.resize(canvas, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return self._photometric(img, r), self._landmarks(p, nz)

    def _draw_state(
        self, identity: int, index: int
    ) -> tuple[IdentityParams, _Nuisance, np.random.Generator]:
        """The identity, the image's nuisances and the generator positioned after them."""
        if identity < 0 or index < 0:
            raise IndexError(f"identity and index must be non-negative, got {identity}, {index}")
        p = self.identity(identity)
        r = np.random.default_rng([self.seed, int(identity), int(index), 1])
        return p, self._nuisance(r, p), r

    def _painter(self, canvas: np.ndarray, p: IdentityParams, nz: _Nuisance) -> _Painter:
        """The pose (rotate/scale about the face centre, then shift): canonical -> canvas."""
        k0 = canvas.shape[0] / CANON
        a = math.radians(nz.angle)
        c, s = math.cos(a) * nz.scale, math.sin(a) * nz.scale
        ox, oy = CX, 62.0
        tx, ty = ox - c * ox + s * oy + nz.shift[0], oy - s * ox - c * oy + nz.shift[1]
        m = np.array([[c, -s, tx], [s, c, ty]]) * k0
        return _Painter(canvas, m, k0 * nz.scale, nz.yaw, p.face_half_width * 1.15)

    def _landmarks(self, p: IdentityParams, nz: _Nuisance) -> np.ndarray:
        """(5, 2) float32 output-pixel landmarks, by the painter's own transform."""
        big = self.size * _SUPERSAMPLE
        pt = self._painter(np.empty((big, big, 0), np.uint8), p, nz)
        mouth_hw = p.mouth_width / 2 * (1.0 + 0.12 * max(0.0, nz.smile))
        mouth_y = p.mouth_y - nz.smile * 3.5 + nz.smile * 0.8  # line between the lips at |u| = 1
        eyes = np.array([[CX - p.eye_half_spacing, p.eye_y], [CX + p.eye_half_spacing, p.eye_y]])
        nose = np.array([[CX, p.nose_y]])
        mouth = np.array([[CX - mouth_hw, mouth_y], [CX + mouth_hw, mouth_y]])
        # the depths the features are drawn with (eyes 0, nose tip 7, lips 2): the same yaw warp
        canvas = np.concatenate(
            [pt.transform(eyes, 0.0), pt.transform(nose, 7.0), pt.transform(mouth, 2.0)]
        )
        # canvas pixel centres 2j and 2j+1 average into output pixel j (INTER_AREA, factor 2)
        return ((canvas - (_SUPERSAMPLE - 1) / 2) / _SUPERSAMPLE).astype(np.float32)

    def _background(self, r: np.random.Generator, big: int) -> np.ndarray:
        """Smooth random colour field plus clutter shapes; grey at difficulty 0."""
        d = min(1.0, self.difficulty)
        grid = (128.0 + d * (r.uniform(0, 255, (3, 3, 3)) - 128.0)).astype(np.uint8)
        bg = cv2.resize(grid, (big, big), interpolation=cv2.INTER_LINEAR)
        n = int(r.integers(0, 7) * d + 0.5)
        for _ in range(n):
            col = _color(r.uniform(0, 255, 3))
            kind = r.integers(3)
            x, y = r.uniform(0, big, 2)
            e = r.uniform(0.05, 0.35) * big
            if kind == 0:
                corner = (int(x + e), int(y + e * r.uniform(0.3, 2)))
                cv2.rectangle(bg, (int(x), int(y)), corner, col, -1)
            elif kind == 1:
                cv2.circle(bg, (int(x), int(y)), int(e / 2), col, -1)
            else:
                t = max(1, round(int(r.integers(2, 10)) * big / 224))  # 2..9 px at size 112
                x2, y2 = r.uniform(0, big, 2)
                cv2.line(bg, (int(x), int(y)), (int(x2), int(y2)), col, t)
        return bg

    def _draw_body(self, pt: _Painter, p: IdentityParams, r: np.random.Generator) -> None:
        """Clothing, neck and long hair behind the head."""
        d = min(1.0, self.difficulty)
        cloth = _color(np.array([90.0, 90.0, 100.0]) + d * (r.uniform(0, 255, 3) - 90.0))
        w, cy = p.face_half_width, p.chin_y
        if p.hair_style == 2:  # long hair falls behind the shoulders
            sides = _symmetric([(w + 6, p.cheek_y - 10), (w + 9, cy + 12), (18, cy + 6)])
            top = [[CX, p.face_top - p.hair_volume]]
            pt.fill(np.concatenate([sides, top]), _scale_color(p.hair_color, 0.85))
        pt.fill(_symmetric([(70, 150), (62, cy + 14), (22, cy + 4)]), cloth)
        pt.fill(_symmetric([(0.55 * w, cy - 14), (0.55 * w, cy + 10)]), _scale_color(p.skin, 0.8))

    def _draw_head(self, pt: _Painter, p: IdentityParams, nz: _Nuisance) -> None:
        skin = p.skin
        # ears, then the face
        ear_y = p.eye_y + 7.0
        for sgn in (-1.0, 1.0):
            ex = CX + sgn * (_half_width_at(p, ear_y) - 1.0)
            pt.fill(_ellipse(ex, ear_y, p.ear_size * 0.42, p.ear_size, 14), _scale_color(skin, 0.9))
            if p.earrings is not None:
                pt.circle(ex + sgn * 1.0, ear_y + p.ear_size * 0.9, 1.6, p.earrings, None)
        pt.fill(_face_outline(p), skin)

        # marks on the skin
        for i in range(p.forehead_lines):
            y = p.eye_y - p.brow_gap - 7.0 - 3.0 * i
            xs = np.linspace(-10.0, 10.0, 7)
            pt.line(np.stack([CX + xs, y + 0.02 * xs**2], 1), _scale_color(skin, 0.85), 0.7, 0.0)
        for x, y in p.freckles:
            pt.circle(x, y, 0.6, _scale_color(skin, 0.78))

        self._draw_beard(pt, p)
        self._draw_nose(pt, p, _scale_color(skin, 0.68))
        self._draw_mouth(pt, p, nz)
        if p.beard in (1, 2, 3):
            mw = p.mouth_width * 0.55
            y0 = p.mouth_y - p.upper_lip - 0.5
            half = _symmetric([(mw, y0 + 2.5), (mw * 0.6, y0 - 3.5)])
            tache = np.concatenate([half[:2], [[CX, y0 - 4.0]], half[2:], [[CX, y0 + 0.5]]])
            pt.fill(tache, p.beard_color, 1.0)
        for x, y, rad in p.moles:
            pt.circle(x, y, rad, _scale_color(skin, 0.45))
        for sgn in (-1.0, 1.0):
            self._draw_eye(pt, p, nz, sgn)
            self._draw_brow(pt, p, nz, sgn)
        self._draw_hair(pt, p)
        if p.glasses and not nz.glasses_off:
            self._draw_glasses(pt, p)

    def _draw_eye(self, pt: _Painter, p: IdentityParams, nz: _Nuisance, sgn: float) -> None:
        ex, ey = CX + sgn * p.eye_half_spacing, p.eye_y
        hw = p.eye_width / 2
        h_up = p.eye_open * p.eye_width * 0.55 * nz.eye_open
        h_lo = p.eye_open * p.eye_width * 0.35 * min(1.0, nz.eye_open + 0.3)
        t = np.linspace(0.0, 1.0, 11)
        bump = np.sin(np.pi * t) ** 0.8
        x = -hw + 2 * hw * t
        upper = np.stack([x, -h_up * bump], 1)
        lower = np.stack([x, h_lo * bump], 1)
        a = math.radians(-sgn * p.eye_tilt)  # outer corner up for both eyes
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        off = np.array([ex, ey])

        def place(q: np.ndarray) -> np.ndarray:
            return q @ rot.T + off

        sclera = np.concatenate([upper, lower[::-1][1:-1]], 0)
        pt.fill(place(sclera), (238.0, 236.0, 230.0), 0.0)
        ir = p.iris_ratio * p.eye_width
        iy = ey + (h_lo - h_up) * 0.15
        pt.circle(ex, iy, ir, p.iris_color)
        pt.circle(ex, iy, ir * 0.45, (18.0, 14.0, 12.0))
        # eyelids: cover the iris outside the eye opening with skin
        big = 2.2 * ir + 2.0
        for curve, edge in ((upper, -big), (lower, big)):
            lid = np.concatenate([curve, [[hw + 1.5, edge], [-hw - 1.5, edge]]], 0)
            pt.fill(place(lid), p.skin, 0.0)
        pt.line(place(upper), (28.0, 22.0, 20.0), p.lid_thickness, 0.0)
        pt.line(place(lower), _scale_color(p.skin, 0.7), 0.5, 0.0)

    def _draw_brow(self, pt: _Painter, p: IdentityParams, nz: _Nuisance, sgn: float) -> None:
        # t=0 inner end (near the nose), t=1 outer end
        t = np.linspace(0.0, 1.0, 9)
        inner_x = CX + sgn * (p.eye_half_spacing - p.brow_length * 0.42)
        x = inner_x + sgn * p.brow_length * t
        base_y = p.eye_y - p.brow_gap - nz.brow_raise
        slope = math.tan(math.radians(p.brow_angle))
        y = base_y - p.brow_arch * np.sin(np.pi * t) + slope * p.brow_length * (0.5 - t)
        half = p.brow_thickness / 2 * (1.0 - 0.55 * t)
        pt.fill(_band(x, y - half, y + half), p.brow_color, 0.5)

    def _draw_nose(self, pt: _Painter, p: IdentityParams, dark: Color) -> None:
        ny, nw = p.nose_y, p.nose_width
        depth = 7.0
        if p.nose_style == 2:  # shaded bridge
            bridge = _symmetric([(2.5, p.eye_y + 2), (nw * 0.35, ny - 1)])
            pt.fill(bridge, _scale_color(p.skin, 0.9), depth * 0.5)
        elif p.nose_style == 1:  # one side line down the bridge
            side = np.array([[CX - 3.0, p.eye_y + 4], [CX - 4.0, ny - 6], [CX - nw * 0.3, ny - 1]])
            pt.line(side, dark, 0.8, depth * 0.5)
        # alae (nose wings) and nostrils
        for sgn in (-1.0, 1.0):
            t = np.linspace(-0.6 * np.pi, 0.55 * np.pi, 8)
            ala_x = CX + sgn * (nw / 2 - 2.0 + 2.0 * np.cos(t))
            pt.line(np.stack([ala_x, ny - 1 + 2.4 * np.sin(t)], 1), dark, 0.8, depth * 0.6)
            nostril = _ellipse(CX + sgn * nw * 0.2, ny + 0.5, nw * 0.11, 0.9, 10)
            pt.fill(nostril, _scale_color(p.skin, 0.4), depth * 0.8)
        tip_x = CX + np.linspace(-nw * 0.15, nw * 0.15, 5)
        tip = np.stack([tip_x, ny + 1.6 - 0.8 * np.cos(np.linspace(-1.2, 1.2, 5))], 1)
        pt.line(tip, dark, 0.6, depth)

    def _draw_mouth(self, pt: _Painter, p: IdentityParams, nz: _Nuisance) -> None:
        hw = p.mouth_width / 2 * (1.0 + 0.12 * max(0.0, nz.smile))
        uu = np.linspace(-1.0, 1.0, 13)
        x = CX + hw * uu
        line_y = p.mouth_y - nz.smile * 3.5 * uu**2 + nz.smile * 0.8
        gap = nz.mouth_open * 6.0
        env = np.sqrt(np.clip(1.0 - uu**2, 0.0, 1.0))
        bow = 0.6 * np.exp(-(((np.abs(uu) - 0.28) / 0.22) ** 2))
        up_in = line_y - gap * 0.4 * env
        up_out = up_in - p.upper_lip * env * (0.75 + bow)
        lo_in = line_y + gap * 0.6 * env
        lo_out = lo_in + p.lower_lip * env
        if gap > 0.3:
            pt.fill(_band(x, up_in, lo_in), (60.0, 20.0, 24.0), 2.0)
            pt.fill(_band(x, up_in, up_in + gap * 0.3 * env), (235.0, 232.0, 220.0), 2.0)
        pt.fill(_band(x, up_out, up_in), _scale_color(p.lip_color, 0.9), 2.0)
        pt.fill(_band(x, lo_in, lo_out), p.lip_color, 2.0)
        pt.line(np.stack([x, line_y], 1), _scale_color(p.lip_color, 0.55), 0.6, 2.0)

    def _draw_beard(self, pt: _Painter, p: IdentityParams) -> None:
        if p.beard in (0, 3):
            return
        # stubble (4): a darker tint of the lower face
        col = _mix(p.skin, p.beard_color, 0.35) if p.beard == 4 else p.beard_color
        if p.beard == 2:  # goatee
            gw = p.mouth_width * 0.35
            y0 = p.mouth_y + p.lower_lip + 1.0
            pts = _ellipse(CX, (y0 + p.chin_y) / 2 + 1, gw, (p.chin_y - y0) / 2 + 1.5, 16)
            pt.fill(pts, col, 1.0)
            return
        y_start = p.nose_y + 2.0 if p.beard in (1, 4) else p.mouth_y + 2.0
        ys = np.linspace(y_start, p.chin_y, 10)
        xs = np.array([_half_width_at(p, float(y)) for y in ys])
        right = np.stack([CX + xs, ys], 1)  # down the right jaw to the chin
        if p.beard == 5:  # chin strap: a band along the jaw
            band = np.concatenate([right, np.stack([CX + xs * 0.75, ys - 4.0], 1)[::-1]], 0)
            pt.fill(band, col)
            pt.fill(_mirror(band), col)
            return
        pt.fill(np.concatenate([right, _mirror(right[::-1])], 0), col)

    def _draw_hair(self, pt: _Painter, p: IdentityParams) -> None:
        if p.hair_style == 0:  # bald: a little hair above the ears
            for sgn in (-1.0, 1.0):
                x = CX + sgn * (p.face_half_width - 2.0)
                pt.fill(_ellipse(x, p.eye_y - 2.0, 3.0, 8.0, 12), p.hair_color)
            return
        w, vol = p.face_half_width, p.hair_volume
        side_y = p.eye_y - 4.0 if p.hair_style != 2 else p.eye_y + 6.0
        # outer contour over the top of the head, from the left side to the right
        a = np.linspace(np.pi, 2 * np.pi, 17)
        cy = p.cheek_y
        arc_x = CX + (w + vol * 0.6) * np.cos(a)
        arc = np.stack([arc_x, cy + (cy - p.face_top + vol) * np.sin(a)], 1)
        left_end, right_end = [CX - w - vol * 0.3, side_y], [CX + w + vol * 0.3, side_y]
        outer = np.concatenate([[left_end], arc, [right_end]])
        # inner contour (the hairline), from the right side back to the left
        tt = np.linspace(0.0, 1.0, 13)
        xs = CX + w * (1.0 - 2.0 * tt)
        if p.hair_style == 3:  # fringe: a low, ragged edge across the forehead
            ys = p.eye_y - p.brow_gap - 2.0 - 2.0 * (np.arange(13) % 2)
            ys[0], ys[-1] = side_y, side_y
        elif p.hair_style == 4:  # side part: a sweep lower on one side
            ys = p.hairline + (side_y - p.hairline) * np.abs(1.0 - 2.0 * tt) ** 3
            ys += 6.0 * np.clip(0.6 - tt, 0.0, None)
        else:
            ys = p.hairline + (side_y - p.hairline) * np.abs(1.0 - 2.0 * tt) ** 2.5
        pt.fill(np.concatenate([outer, np.stack([xs, ys], 1)], 0), p.hair_color)
        if p.hair_style == 5:  # curls along the outer contour
            curl = _scale_color(p.hair_color, 0.8)
            for q in outer[1:-1:2]:
                pt.circle(float(q[0]), float(q[1]), vol * 0.45, curl, None)

    def _draw_glasses(self, pt: _Painter, p: IdentityParams) -> None:
        col = p.glasses_color
        th = p.glasses_thickness
        r = p.glasses_size * p.eye_width
        rim = r * (0.85 if p.glasses == 1 else 1.0)  # lens half width at the eye line
        for sgn in (-1.0, 1.0):
            ex = CX + sgn * p.eye_half_spacing
            if p.glasses == 2:  # rectangular
                lens = _box(ex - r, p.eye_y - r * 0.6, ex + r, p.eye_y + r * 0.65)
            else:  # round (1) or wide oval (3)
                ax, ay = (0.85, 0.8) if p.glasses == 1 else (1.05, 0.62)
                lens = _ellipse(ex, p.eye_y + 0.5, r * ax, r * ay, 20)
            pt.line(np.concatenate([lens, lens[:1]]), col, th, 2.0)  # closed
            ear_x = CX + sgn * (p.face_half_width + 1.0)
            pt.line(np.array([[ex + sgn * rim, p.eye_y], [ear_x, p.eye_y + 2]]), col, th, None)
        inner = p.eye_half_spacing - rim
        bridge = np.array([[CX - inner, p.eye_y], [CX, p.eye_y - 1.5], [CX + inner, p.eye_y]])
        pt.line(bridge, col, th, 3.0)

    def _draw_occluder(self, pt: _Painter, r: np.random.Generator) -> None:
        """A random patch (hand, sticker, microphone...) over part of the face."""
        col = _color(r.uniform(0, 255, 3))
        x, y = r.uniform(25.0, 87.0), r.uniform(35.0, 105.0)
        ax, ay = r.uniform(7.0, 18.0, 2)
        if r.random() < 0.5:
            pt.fill(_box(x - ax, y - ay, x + ax, y + ay), col)
        else:
            pt.fill(_ellipse(x, y, ax, ay, 20, r.uniform(0, 180)), col)

    def _photometric(self, img: np.ndarray, r: np.random.Generator) -> np.ndarray:
        """Illumination (gain field, contrast, colour cast), blur and noise; uint8 -> uint8."""
        d = self.difficulty
        if d == 0.0:
            return img
        n = self.size
        gain = 1.0 + d * r.uniform(-0.3, 0.25)
        cast = 1.0 + d * r.uniform(-0.1, 0.1, 3)
        # a linear illumination gradient in a random direction
        g = d * r.uniform(0.0, 0.5)
        a = r.uniform(0, 2 * np.pi)
        corners = np.array([[-1.0, 1.0]])
        gx, gy = np.cos(a) * corners, np.sin(a) * corners.T
        field = (1.0 + g * 0.5 * (gx + gy)).astype(np.float32)
        field = cv2.resize(field, (n, n), interpolation=cv2.INTER_LINEAR)
        contrast = 1.0 + d * r.uniform(-0.3, 0.15)
        x = img.astype(np.float32)
        mean = float(x.mean())
        # (x - mean) * contrast + mean, then the gain field and colour cast, in one pass
        x *= np.float32(contrast)
        x += np.float32(mean * (1.0 - contrast))
        x *= field[:, :, None] * (gain * cast).astype(np.float32)
        sigma = d * r.uniform(0.0, 1.1)
        if sigma > 0.3:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
        noise = d * r.uniform(0.0, 7.0)
        if noise > 0.5:
            if n <= _NOISE_SIDE:
                oy, ox = r.integers(0, _NOISE_SIDE - n + 1, 2)
                z = _noise_bank()[oy : oy + n, ox : ox + n]
            else:
                z = r.standard_normal(x.shape, dtype=np.float32)
            x += z * np.float32(noise)
        x += np.float32(0.5)
        return np.clip(x, 0, 255, out=x).astype(np.uint8)
