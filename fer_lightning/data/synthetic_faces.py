"""Drawn faces with FACS expressions: one face, its pose, light and camera, from an RNG.

Expressions are built from FACS action units (AUs) with an intensity, so subtle
expressions look nearly neutral and fear shares most of surprise's AUs: the task is
ambiguous the way real data is, not a trivially separable toy. The data set that uses
these faces (writing, caching, the data source) is :mod:`fer_lightning.data.synthetic`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from fer_lightning.emotions import EMOTIONS, NUM_CLASSES

# The FACS action units of each basic emotion (prototypes after Ekman & Friesen).
EXPRESSION_AUS: dict[str, tuple[int, ...]] = {
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "disgust": (9, 15, 16),
    "happiness": (6, 12),
    "sadness": (1, 4, 15),
    "anger": (4, 5, 7, 23),
    "neutral": (),
}
_ALL_AUS = (1, 2, 4, 5, 6, 7, 9, 12, 15, 16, 20, 23, 26)
_SS = 2  # supersampling factor: draw at 2x, downscale with INTER_AREA (anti-aliasing)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel precision for the drawing primitives
_SHADE_DOWN = 4  # the smooth shading layer is drawn this much coarser, then blurred

_SKIN_TONES = np.array(
    [
        (250, 222, 200),
        (238, 196, 168),
        (222, 170, 136),
        (196, 136, 102),
        (160, 104, 74),
        (118, 76, 54),
        (82, 54, 40),
    ],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [
        (22, 18, 16),
        (48, 34, 26),
        (88, 60, 40),
        (122, 62, 34),
        (186, 150, 100),
        (150, 146, 140),
        (212, 206, 198),
    ],
    dtype=np.float64,
)
_HAIR_P = np.array([0.32, 0.24, 0.18, 0.06, 0.10, 0.07, 0.03])
_STYLE_CDF = np.cumsum([0.12, 0.43, 0.33])  # hair styles: bald, short, long, (rest) bun
# two browns first, then green, blue, hazel
_IRIS_COLOURS = np.array([(60, 38, 24), (96, 64, 36), (70, 100, 60), (70, 110, 150), (110, 90, 60)])


# --------------------------------------------------------------------------- drawing


class _Canvas:
    """Draws anti-aliased shapes in face units (1.0 = the image side), origin at the face centre."""

    def __init__(self, img: np.ndarray, centre: tuple[float, float], unit: float) -> None:
        self.img = img
        self.centre = np.asarray(centre, dtype=np.float64)
        self.unit = unit

    def _pts(self, xy: np.ndarray) -> np.ndarray:
        pix = (np.asarray(xy, dtype=np.float64) * self.unit + self.centre) * (1 << _SHIFT)
        return np.rint(pix).astype(np.int32)

    def _fixed(self, v: float, axis: int) -> int:
        """One coordinate (axis 0: x, 1: y) in fixed point; cheaper than ``_pts``."""
        return round((v * self.unit + self.centre[axis]) * (1 << _SHIFT))

    def _px(self, v: float) -> int:
        return max(1, round(v * self.unit))

    def fill(self, xy: np.ndarray, colour) -> None:
        cv2.fillPoly(self.img, [self._pts(xy)], colour, cv2.LINE_AA, _SHIFT)

    def line(self, xy: np.ndarray, colour, width: float) -> None:
        cv2.polylines(
            self.img, [self._pts(xy)], False, colour, self._px(width), cv2.LINE_AA, _SHIFT
        )

    def ellipse(
        self,
        centre,
        axes,
        colour,
        angle: float = 0.0,
        width: float | None = None,
        arc: tuple[float, float] = (0.0, 360.0),
    ) -> None:
        c = (self._fixed(centre[0], 0), self._fixed(centre[1], 1))
        ax = tuple(max(1, int(a * self.unit * (1 << _SHIFT) + 0.5)) for a in axes)
        thickness = -1 if width is None else self._px(width)
        cv2.ellipse(self.img, c, ax, angle, arc[0], arc[1], colour, thickness, cv2.LINE_AA, _SHIFT)


@functools.lru_cache(maxsize=64)
def _linspace(a: float, b: float, n: int) -> np.ndarray:
    """Cached ``np.linspace`` (read-only): the drawing reuses a few sample grids."""
    v = np.linspace(a, b, n)
    v.flags.writeable = False
    return v


def _curve(p0, p1, p2, n: int = 12) -> np.ndarray:
    """Quadratic curve from p0 to p2 passing through p1 at its middle."""
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    ctrl = 2.0 * p1 - 0.5 * (p0 + p2)
    t = _linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p2


def _arc(centre, axes, a0: float = 0.0, a1: float = 2 * np.pi, n: int = 48) -> np.ndarray:
    """Points of an ellipse arc; angles in radians, clockwise on screen (y points down)."""
    a = a0 + (a1 - a0) * _linspace(0.0, 1.0, n)
    return np.stack([centre[0] + axes[0] * np.cos(a), centre[1] + axes[1] * np.sin(a)], axis=1)


def _shade(colour, factor: float) -> tuple[float, float, float]:
    return tuple(float(c) * factor for c in colour)


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b, strict=True))


@dataclass
class _Face:
    """Identity of one drawn person: geometry in face units, colours in RGB."""

    fa: float  # face half width
    fb: float  # face half height
    taper: float  # how much narrower the jaw is than the cheekbones
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    iris_r: float
    gaze: tuple[float, float]
    brow_gap: float
    brow_arch: float
    brow_t: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_lo: float
    fold: float  # baseline depth of the nasolabial folds (age)
    skin: tuple[float, float, float]
    lips: tuple[float, float, float]
    hair: tuple[float, float, float]
    brows: tuple[float, float, float]
    iris: tuple[float, float, float]
    light_side: float  # -1 or 1: the side the nose shadow falls on


def _sample_face(rng: np.random.Generator) -> _Face:
    u = rng.uniform
    t = (len(_SKIN_TONES) - 1) * rng.beta(1.4, 1.8)  # light to dark, more light/medium tones
    lo = min(int(t), len(_SKIN_TONES) - 2)
    skin = _SKIN_TONES[lo] * (1 - (t - lo)) + _SKIN_TONES[lo + 1] * (t - lo)
    skin = skin + rng.normal(0, 6, 3)  # colours need no clipping: cv2 saturates them
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_P)] * u(0.8, 1.15)
    lips = skin * (0.95, 0.7, 0.72) * u(0.75, 0.95)
    brown_eyes = rng.random() < 0.55 + 0.07 * t  # dark eyes are more common with dark skin
    iris = _IRIS_COLOURS[rng.integers(0, 2) if brown_eyes else rng.integers(2, 5)]
    return _Face(
        fa=u(0.33, 0.38),
        fb=u(0.44, 0.49),
        taper=u(0.1, 0.3),
        eye_y=u(-0.13, -0.10),
        eye_dx=u(0.14, 0.165),
        eye_w=u(0.068, 0.084),
        eye_h=u(0.026, 0.034),
        iris_r=u(0.026, 0.032),
        gaze=(rng.normal(0, 0.006), rng.normal(0, 0.003)),
        brow_gap=u(0.055, 0.075),
        brow_arch=u(0.006, 0.022),
        brow_t=u(0.016, 0.028),
        nose_y=u(0.07, 0.11),
        nose_w=u(0.034, 0.048),
        mouth_y=u(0.20, 0.235),
        mouth_w=u(0.085, 0.11),
        lip_up=u(0.012, 0.02),
        lip_lo=u(0.016, 0.028),
        fold=u(0.0, 0.35),
        skin=tuple(skin),
        lips=tuple(lips),
        hair=tuple(hair),
        brows=tuple(hair * u(0.5, 0.8)),
        iris=tuple(iris * u(0.8, 1.2)),
        light_side=float(rng.choice((-1.0, 1.0))),
    )


def _action_units(label: int, intensity: float, gain: np.ndarray) -> dict[int, float]:
    """AU activations of one face; ``gain`` (per AU, <= 1) varies how people express it."""
    active = EXPRESSION_AUS[EMOTIONS[label]]
    return {
        au: (intensity * g if au in active else 0.0) for au, g in zip(_ALL_AUS, gain, strict=True)
    }


def _draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random background: flat, gradient or blotchy (coarse noise grid upscaled)."""
    grid = int(rng.choice((2, 3, 5)))
    grey = rng.uniform(20, 235)
    base = grey + (rng.uniform(0, 255, 3) - grey) * rng.uniform(0, 0.6)  # muted colours
    spread = rng.uniform(0, 50)
    cells = base + rng.normal(0, 1, (grid, grid, 1)) * spread + rng.normal(0, 8, (grid, grid, 3))
    cells = np.clip(cells, 0, 255).astype(np.uint8)
    return cv2.resize(cells, (size, size), interpolation=cv2.INTER_CUBIC)


def _draw_hair_back(cv: _Canvas, f: _Face, style: int) -> None:
    if style == 0:  # bald / shaved: the head outline is the face
        return
    if style == 2:  # long: falls behind the face down to the shoulders
        top = _arc((0, -0.04), (f.fa + 0.07, f.fb + 0.04), np.pi - 0.1, 2 * np.pi + 0.1)
        shoulders = np.array([[f.fa + 0.12, 0.7], [-f.fa - 0.12, 0.7]])
        cv.fill(np.concatenate([shoulders[1:], top, shoulders[:1]]), f.hair)
    elif style == 3:  # bun on top
        cv.ellipse((0, -f.fb - 0.02), (0.09, 0.07), f.hair)
    cv.ellipse((0, -0.06), (f.fa + 0.035, f.fb * 0.82), f.hair)


def _draw_head(cv: _Canvas, f: _Face, aus: dict[int, float], style: int, clothes) -> None:
    neck = _shade(f.skin, 0.78)
    cv.fill(
        np.array([[-f.fa * 0.55, 0.1], [f.fa * 0.55, 0.1], [f.fa * 0.6, 0.7], [-f.fa * 0.6, 0.7]]),
        neck,
    )
    cv.ellipse((0, f.fb + 0.33), (0.7, 0.28), clothes)
    if style != 2:  # ears, hidden by long hair
        for s in (-1, 1):
            cv.ellipse((s * f.fa * 0.97, f.eye_y + 0.05), (0.035, 0.065), _shade(f.skin, 0.9))
    face = _arc((0, 0), (f.fa, f.fb), n=64)
    jaw = face[:, 1] > 0
    face[jaw, 0] *= 1 - f.taper * (face[jaw, 1] / f.fb) ** 1.5  # narrower jaw and chin
    face[jaw, 1] *= 1 + 0.12 * aus[26]  # jaw drop lengthens the lower face
    face[jaw, 0] *= 1 - 0.04 * aus[26]
    cv.fill(face, f.skin)


def _draw_shading(shade: _Canvas, f: _Face, aus: dict[int, float]) -> None:
    """Coarse light/shadow layer (multiplied in): face volume, eye sockets, cheeks."""
    for k, v in ((1.0, 0.80), (0.85, 0.88), (0.65, 0.95), (0.4, 1.0)):
        shade.ellipse((0, 0.03 * (1 - k)), (f.fa * k, f.fb * k), (v,))
    for s in (-1, 1):
        shade.ellipse((s * f.eye_dx, f.eye_y - 0.01), (f.eye_w * 1.3, f.eye_h * 2.2), (0.9,))
        # AU6 raises the cheeks: a lit bulge under the eye and a shadow below it
        cy = f.eye_y + 0.12 - 0.03 * aus[6]
        shade.ellipse((s * (f.eye_dx + 0.01), cy + 0.05), (0.07, 0.04), (1 - 0.08 * aus[6],))
        shade.ellipse((s * (f.eye_dx + 0.01), cy), (0.06, 0.04), (1 + 0.06 * aus[6],))
    shade.ellipse((f.light_side * 0.03, f.nose_y - 0.06), (0.02, 0.07), (0.88,))
    shade.ellipse((0, f.mouth_y + 0.09), (0.06, 0.025), (0.92,))  # under the lower lip


def _draw_eye(cv: _Canvas, f: _Face, aus: dict[int, float], s: int) -> None:
    ex, ey = s * f.eye_dx, f.eye_y
    hu = f.eye_h * (1 - 0.2 * aus[6] - 0.25 * aus[7]) + 0.034 * aus[5]
    hl = f.eye_h * 0.65 * (1 - 0.5 * aus[6] - 0.45 * aus[7]) + 0.004 * aus[5]
    t = _linspace(-1.0, 1.0, 15)
    x = ex + t * f.eye_w
    skew = 1 + 0.12 * t * s  # the upper lid peaks towards the nose
    upper = np.stack([x, ey - hu * (1 - t**2) ** 0.8 * skew], axis=1)
    lower = np.stack([x, ey + hl * (1 - t**2) ** (1.2 - 0.5 * aus[7])], axis=1)
    outline = np.concatenate([upper, lower[::-1]])
    crease = upper.copy()
    crease[:, 1] -= 0.012 + 0.3 * f.eye_h * (1 - aus[5])
    cv.line(crease[2:-2], _shade(f.skin, 0.8), 0.004)
    # sclera, then iris and pupil drawn on a copy of a small ROI and kept inside the opening
    cv.fill(outline, _mix(f.skin, (240, 238, 235), 0.8))
    x0, y0 = cv._pts([[ex - f.eye_w * 1.1, ey - hu - 0.01]]).ravel() >> _SHIFT
    x1, y1 = cv._pts([[ex + f.eye_w * 1.1, ey + hl + 0.01]]).ravel() >> _SHIFT
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    roi = cv.img[y0 : int(y1) + 2, x0 : int(x1) + 2]
    sub = _Canvas(roi.copy(), cv.centre - (x0, y0), cv.unit)
    ic = (ex + f.gaze[0], ey + f.gaze[1] + 0.002)
    sub.ellipse(ic, (f.iris_r, f.iris_r), f.iris)
    sub.ellipse(ic, (f.iris_r * 0.45, f.iris_r * 0.45), (15, 12, 12))
    sub.ellipse((ic[0] + 0.008, ic[1] - 0.008), (0.004, 0.004), (250, 250, 250))
    inside = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(inside, [sub._pts(outline)], 1, cv2.LINE_8, _SHIFT)
    np.copyto(roi, sub.img, where=inside[..., None].astype(bool))
    cv.line(upper, (25, 18, 16), 0.009)  # lashes line
    cv.line(lower[2:-2], _shade(f.skin, 0.7), 0.0035)
    if aus[6] > 0 or aus[7] > 0:  # crow's feet / tightened lower lid lines
        k = max(aus[6], 0.6 * aus[7])
        colour = _shade(f.skin, 1 - 0.3 * k)
        ox = ex + s * (f.eye_w + 0.012)
        for dy in (-0.012, 0.0, 0.014):
            cv.line(np.array([[ox, ey + dy * 0.5], [ox + s * 0.03, ey + dy * 1.6]]), colour, 0.0035)
        cv.line(lower[3:-3] + (0, 0.012), colour, 0.0035)


def _draw_brows(cv: _Canvas, f: _Face, aus: dict[int, float]) -> None:
    for s in (-1, 1):
        ex, top = s * f.eye_dx, f.eye_y - f.brow_gap
        inner = [ex - s * f.eye_w * 0.95, top]
        mid = [ex + s * f.eye_w * 0.1, top - f.brow_arch]
        outer = [ex + s * f.eye_w * 1.2, top + 0.004]
        inner[1] += -0.07 * aus[1] + 0.042 * aus[4] + 0.018 * aus[9]
        inner[0] -= s * 0.026 * aus[4]
        mid[1] += -0.028 * aus[1] - 0.055 * aus[2] + 0.022 * aus[4]
        outer[1] += -0.06 * aus[2]
        c = _curve(inner, mid, outer, 10)
        th = f.brow_t * _linspace(1.0, 0.45, len(c))[:, None] * [0, 0.5]
        cv.fill(np.concatenate([c - th, (c + th)[::-1]]), f.brows)
    if aus[4] > 0:  # vertical furrows between knit brows
        colour = _shade(f.skin, 1 - 0.3 * aus[4])
        for s in (-1, 1):
            x = s * (f.eye_dx - f.eye_w - 0.012)
            cv.line(
                _curve(
                    [x, f.eye_y - 0.08], [x + s * 0.004, f.eye_y - 0.055], [x, f.eye_y - 0.03], 5
                ),
                colour,
                0.004,
            )
    raise_ = max(aus[1], aus[2])
    if raise_ > 0:  # horizontal forehead lines
        colour = _shade(f.skin, 1 - 0.22 * raise_)
        for i in range(3):
            y = f.eye_y - f.brow_gap - 0.075 - 0.03 * i
            cv.line(
                _curve([-0.13, y + 0.008], [0, y - 0.006 * aus[1]], [0.13, y + 0.008], 9),
                colour,
                0.0035,
            )


def _nose_y(f: _Face, aus: dict[int, float]) -> float:
    """Height of the nostrils; AU9 (nose wrinkle) lifts them."""
    return f.nose_y - 0.018 * aus[9]


def _draw_nose(cv: _Canvas, f: _Face, aus: dict[int, float]) -> None:
    ny = _nose_y(f, aus)
    nw = f.nose_w + 0.012 * aus[9]
    dark = _shade(f.skin, 0.72)
    s = f.light_side
    cv.line(
        _curve(
            [s * 0.022, f.eye_y + 0.01],
            [s * 0.03, (f.eye_y + ny) / 2],
            [s * nw * 0.9, ny - 0.03],
            8,
        ),
        _shade(f.skin, 0.86),
        0.005,
    )
    cv.ellipse((0, ny - 0.012), (0.022, 0.014), dark, arc=(20, 160), width=0.004)
    for side in (-1, 1):
        cv.ellipse(
            (side * 0.018, ny + 0.002), (0.011, 0.005), _shade(f.skin, 0.45), angle=side * 18
        )
        cv.ellipse(
            (side * (nw - 0.012), ny - 0.008),
            (0.014, 0.016),
            dark,
            arc=(-100, 80) if side > 0 else (100, 280),
            width=0.004,
        )
    if aus[9] > 0:  # wrinkles across the bridge
        colour = _shade(f.skin, 1 - 0.35 * aus[9])
        for i in range(3):
            y = f.eye_y + 0.005 + 0.011 * i
            cv.line(_curve([-0.03, y + 0.004], [0, y - 0.003], [0.03, y + 0.004], 5), colour, 0.004)


def _mouth_line(f: _Face, aus: dict[int, float]) -> tuple[float, float, float]:
    """Half width, height and corner drop of the mouth (AU12 lifts the corners, AU15 lowers)."""
    mw = f.mouth_w * (1 + 0.32 * aus[12] + 0.45 * aus[20] - 0.18 * aus[23] - 0.15 * aus[26])
    corner = -0.075 * aus[12] + 0.055 * aus[15] + 0.012 * aus[20]
    return mw, f.mouth_y - 0.012 * aus[9], corner


def _draw_mouth(cv: _Canvas, f: _Face, aus: dict[int, float]) -> None:
    mw, my, corner = _mouth_line(f, aus)
    thin = (1 - 0.65 * aus[23]) * (1 - 0.2 * aus[12]) * (1 - 0.25 * aus[20])
    up_t, lo_t = f.lip_up * thin, f.lip_lo * thin
    gap_up = 0.02 * aus[26] + 0.008 * aus[9] + 0.004 * max(0.0, aus[12] - 0.35)
    gap_lo = 0.1 * aus[26] + 0.03 * aus[16] + 0.06 * max(0.0, aus[12] - 0.35)
    t = _linspace(-1.0, 1.0, 21)
    x = t * mw
    line = my + corner * t**2
    bulge = np.sqrt(1 - t**2)
    open_lo = line + gap_lo * (1 - t**2) ** (0.7 - 0.3 * aus[16])
    open_up = line - gap_up * (1 - t**2) ** 0.8
    bow = 1 - 0.3 * np.exp(-((t / 0.12) ** 2))  # cupid's bow dip
    outer_up = open_up - up_t * bulge**0.7 * bow
    outer_lo = open_lo + lo_t * bulge**0.6
    # nasolabial folds, deepened by cheek raise / smile / nose wrinkle
    fold = min(1.0, f.fold + 0.8 * aus[12] + 0.4 * aus[6] + 0.5 * aus[9])
    for s in (-1, 1):
        start = [s * (f.nose_w + 0.018), f.nose_y - 0.005]
        end = [s * (mw + 0.022), my + corner + 0.025 - 0.02 * aus[12]]
        mid = [s * (mw * 0.5 + f.nose_w * 0.5 + 0.04), (start[1] + end[1]) / 2]
        cv.line(_curve(start, mid, end, 8), _shade(f.skin, 1 - 0.25 * fold), 0.004)
    cv.fill(np.concatenate([np.stack([x, outer_up], 1), np.stack([x, outer_lo], 1)[::-1]]), f.lips)
    inner_up, inner_lo = np.stack([x, open_up], 1), np.stack([x, open_lo], 1)
    if gap_lo + gap_up > 0.004:
        dark = (70, 22, 28)
        cv.fill(np.concatenate([inner_up, inner_lo[::-1]]), dark)
        # barely parted lips let little light in: the teeth emerge from shadow as they part
        teeth = _mix(dark, (232, 226, 212), min(1.0, (gap_lo + gap_up) / 0.035))
        upper_teeth = np.stack([x, np.minimum(open_up + 0.022, open_lo)], 1)
        cv.fill(np.concatenate([inner_up, upper_teeth[::-1]]), teeth)
        if aus[16] > 0.2:
            lower_teeth = np.stack([x, np.maximum(open_lo - 0.012 * aus[16], open_up)], 1)
            cv.fill(np.concatenate([lower_teeth, inner_lo[::-1]]), _shade(teeth, 0.9))
    cv.line(inner_up, _shade(f.lips, 0.55), 0.004)
    cv.line(np.stack([x, outer_lo], 1)[5:-5] + (0, 0.003), _shade(f.skin, 0.85), 0.003)


def _draw_fringe(cv: _Canvas, f: _Face, rng: np.random.Generator, style: int) -> None:
    """Hair over the forehead, from a random hairline height with an optional side part."""
    if style == 0:
        return
    hairline = -f.fb * rng.uniform(0.58, 0.8)
    temple = f.eye_y - rng.uniform(0.02, 0.1)
    part = rng.uniform(-0.6, 0.6)
    wave = rng.uniform(0, 0.012)
    xt = f.fa * np.sqrt(max(0.0, 1 - (temple / f.fb) ** 2)) + 0.004
    a0, a1 = np.arctan2(temple / f.fb, -xt / f.fa), np.arctan2(temple / f.fb, xt / f.fa)
    head = _arc((0, 0), (1.02 * f.fa, 1.02 * f.fb), a0 + 2 * np.pi, a1 + 2 * np.pi, 30)
    x = xt * _linspace(1.0, -1.0, 25)
    rel = (x / xt - part) / (1 + np.abs(part))
    y = hairline + (temple - hairline) * np.abs(rel) ** 2.2 + wave * np.sin(x * 90)
    cv.fill(np.concatenate([head, np.stack([x, y], 1)]), f.hair)


def _draw_glasses(cv: _Canvas, f: _Face, rng: np.random.Generator, sunglasses: bool) -> None:
    colour = tuple(rng.uniform(10, 90, 3)) if rng.random() < 0.8 else (170, 170, 175)
    rx, ry = f.eye_w * rng.uniform(1.3, 1.6), f.eye_h * rng.uniform(2.0, 2.8)
    for s in (-1, 1):
        c = (s * f.eye_dx, f.eye_y + 0.004)
        if sunglasses:  # they hide the eyes
            cv.ellipse(c, (rx, ry), (25, 25, 30))
        cv.ellipse(c, (rx, ry), colour, width=0.008)
        cv.line(
            np.array([[s * (f.eye_dx + rx), f.eye_y], [s * (f.fa + 0.01), f.eye_y - 0.01]]),
            colour,
            0.008,
        )
    inner = f.eye_dx - rx
    cv.line(
        _curve([-inner, f.eye_y - 0.005], [0, f.eye_y - 0.018], [inner, f.eye_y - 0.005], 6),
        colour,
        0.008,
    )


def _draw_hand(cv: _Canvas, f: _Face, rng: np.random.Generator) -> None:
    """A hand-like blob (palm and fingers) covering part of the lower face."""
    cx, cy = rng.uniform(-0.25, 0.25), rng.uniform(0.1, 0.45)
    ang = rng.uniform(-60, 60)
    skin = np.asarray(f.skin) * rng.uniform(0.9, 1.1)
    edge = _shade(skin, 0.75)
    rot = np.deg2rad(ang)
    d = np.array([np.sin(rot), -np.cos(rot)])  # finger direction
    n = np.array([d[1], -d[0]])
    for i in range(4):
        tip = np.array([cx, cy]) + d * 0.12 + n * (i - 1.5) * 0.036
        cv.ellipse(tuple(tip), (0.02, 0.07), edge, angle=ang)
        cv.ellipse(tuple(tip), (0.016, 0.066), tuple(skin), angle=ang)
    cv.ellipse((cx, cy), (0.085, 0.09), edge, angle=ang)
    cv.ellipse((cx, cy), (0.08, 0.085), tuple(skin), angle=ang)


@functools.lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [-1, 1], for the lighting gradient."""
    v = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return tuple(np.meshgrid(v, v))


def render_face(
    rng: np.random.Generator, label: int, intensity: float, size: int = 100
) -> np.ndarray:
    """Draw one face (``size`` x ``size`` x 3 uint8 RGB) showing ``EMOTIONS[label]``.

    ``intensity`` in [0, 1] scales the expression's action units; near 0 every label
    looks neutral. ``rng`` is consumed the same way for every label and intensity, so
    equal RNG states give the same person, pose and background with another expression.
    """
    return render_face_with_landmarks(rng, label, intensity, size)[0]


def render_face_with_landmarks(
    rng: np.random.Generator, label: int, intensity: float, size: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_face` and where the drawn face's five landmarks ended up in it.

    The landmarks (float32 ``[5, 2]``, pixel x, y) follow the five-point convention of
    face detectors and aligners (MTCNN, RAF-DB): eye centres, nose tip, mouth corners,
    left to right in the image. They are exact, so a detector or an alignment can be
    checked against them.
    """
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be a class index 0..{NUM_CLASSES - 1}, got {label}")
    # identity first; no RNG draw below depends on the label or the intensity
    f = _sample_face(rng)
    gain = rng.uniform(0.65, 1.0, len(_ALL_AUS))
    aus = _action_units(label, float(np.clip(intensity, 0.0, 1.0)), gain)
    big = size * _SS
    # a margin, so rotating never shows an edge; divisible by the shading's downscale
    low = _SHADE_DOWN * round(size * 1.3 / _SHADE_DOWN)
    canvas_size = _SS * low
    centre = (canvas_size / 2 - 0.5,) * 2  # image centre in pixel-centre coordinates
    img = _draw_background(rng, canvas_size)
    cv = _Canvas(img, centre, big)
    style = int(np.searchsorted(_STYLE_CDF, rng.random()))  # bald, short, long, bun
    clothes = tuple(rng.uniform(15, 230, 3))
    _draw_hair_back(cv, f, style)
    _draw_head(cv, f, aus, style, clothes)
    _draw_brows(cv, f, aus)
    _draw_nose(cv, f, aus)
    _draw_mouth(cv, f, aus)
    for s in (-1, 1):
        _draw_eye(cv, f, aus, s)
    _draw_fringe(cv, f, rng, style)
    occluder = rng.random(2)
    if occluder[0] < 0.15:
        _draw_glasses(cv, f, rng, sunglasses=occluder[0] < 0.03)
    if occluder[1] < 0.07:
        _draw_hand(cv, f, rng)
    img = cv2.resize(img, (low, low), interpolation=cv2.INTER_AREA)  # anti-aliasing

    # light: face volume shading times a lighting gradient and a colour cast, in one multiply
    small = low // _SHADE_DOWN
    shade = np.ones((small, small), np.float32)
    _draw_shading(_Canvas(shade, (small / 2 - 0.5,) * 2, size / _SHADE_DOWN), f, aus)
    shade = cv2.GaussianBlur(shade, (0, 0), 0.05 * size / _SHADE_DOWN)
    shade = cv2.resize(shade, (low, low), interpolation=cv2.INTER_LINEAR)
    xx, yy = _unit_grid(low)
    theta, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.35)
    shade *= (1 + strength * (np.cos(theta) * xx + np.sin(theta) * yy)) * rng.uniform(0.75, 1.15)
    gains = rng.uniform(0.94, 1.06, 3).tolist()
    img = cv2.multiply(img, cv2.merge([shade * g for g in gains]), dtype=cv2.CV_8U)  # saturates

    # pose: the residual rotation, scale and shift of an imperfect face alignment
    angle = float(np.clip(rng.normal(0, 5), -15, 15))
    scale = rng.uniform(0.9, 1.1)
    offset = rng.normal(0, 0.025, 2) * size
    m = cv2.getRotationMatrix2D((low / 2 - 0.5,) * 2, angle, scale)
    m[:, 2] += np.array([size * 0.5, size * 0.52]) + offset - (low / 2 - 0.5)
    img = cv2.warpAffine(
        img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    mw, my, corner = _mouth_line(f, aus)
    points = np.array(  # face units: eye openings' centres, nose tip (above the nostrils)
        [
            (-f.eye_dx, f.eye_y),
            (f.eye_dx, f.eye_y),
            (0.0, _nose_y(f, aus) - 0.005),
            (-mw, my + corner),
            (mw, my + corner),
        ]
    )
    # drawn around the 2x canvas centre, downscaled (pixel centres), then posed by m
    landmarks = (points * size + (low / 2 - 0.5)) @ m[:, :2].T + m[:, 2]

    # camera: greyscale, blur, sensor noise
    camera = rng.random(3)
    if camera[0] < 0.08:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    if camera[1] < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.1) * size / 100)
    if camera[2] < 0.5:  # uniform noise from raw bytes: ~10x faster than normal draws
        noise = np.frombuffer(rng.bytes(img.size), np.uint8).reshape(img.shape)
        k = rng.uniform(1, 5) / 73.9  # 73.9: the standard deviation of uniform bytes
        img = cv2.addWeighted(img, 1.0, noise, k, -127.5 * k)
    return img, landmarks.astype(np.float32)
