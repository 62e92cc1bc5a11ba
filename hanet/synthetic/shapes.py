"""Building blocks of the synthetic scenes: appearance vectors ("looks"), the
labelled polygon record, polygon clipping/rounding, and shape templates.

A look is a base RGB colour plus the amplitudes of the texture fields in ``FIELDS``
(see :mod:`hanet.synthetic.render`).  Templates give outlines in object units:
u in [-0.5, 0.5] across, v in [0, 1] up from the ground.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Look vector: base RGB, then amplitudes of the texture fields below.
FIELDS = ("fine", "coarse", "windows", "hstripes", "vstripes", "vgrad")
NLOOK = 3 + len(FIELDS)


def look(rgb, fine=0.0, coarse=0.0, windows=0.0, hstripes=0.0, vstripes=0.0, vgrad=0.0) -> np.ndarray:
    return np.array([*rgb, fine, coarse, windows, hstripes, vstripes, vgrad], dtype=np.float32)


@dataclass
class SceneObject:
    """One labelled polygon (integer points, clipped to the image) with its look and
    appearance-only parts [(polygon, look)]."""

    label: str
    polygon: list[tuple[int, int]]
    look: np.ndarray
    parts: list[tuple[list[tuple[int, int]], np.ndarray]] = field(default_factory=list)


def clip_polygon(poly, w: int, h: int) -> list[tuple[int, int]] | None:
    """Sutherland-Hodgman clip of a polygon to [0, w-1] x [0, h-1], rounded to
    integers; None when fewer than 3 distinct points remain."""
    pts = [(float(x), float(y)) for x, y in poly]
    for axis, bound, keep_below in ((0, 0.0, False), (0, w - 1.0, True), (1, 0.0, False), (1, h - 1.0, True)):
        if not pts:
            return None

        def inside(p):
            return p[axis] <= bound if keep_below else p[axis] >= bound

        def cross(p, q):
            t = (bound - p[axis]) / (q[axis] - p[axis])
            return (bound, p[1] + t * (q[1] - p[1])) if axis == 0 else (p[0] + t * (q[0] - p[0]), bound)

        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
        pts = out
    rounded: list[tuple[int, int]] = []
    for x, y in pts:
        p = (int(round(x)), int(round(y)))
        if not rounded or rounded[-1] != p:
            rounded.append(p)
    while len(rounded) > 1 and rounded[0] == rounded[-1]:
        rounded.pop()
    return rounded if len(set(rounded)) >= 3 else None


def ellipse(cx, cy, rx, ry, n=14, rng=None, wobble=0.0):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 + (rng.uniform(-wobble, wobble, n) if rng is not None and wobble else 0.0)
    return list(zip(cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)))


def template(points, cx, yb, w, h):
    """Template points (u in [-0.5, 0.5] across, v in [0, 1] up from the ground) placed
    with centre cx, ground row yb, width w and height h in pixels."""
    return [(cx + u * w, yb - v * h) for u, v in points]


def rect(x0, y0, x1, y1):
    """Axis-aligned box, at least 1 pixel wide and high after rounding."""
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    x1, y1 = max(x1, x0 + 1.0), max(y1, y0 + 1.0)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


CAR_REAR = [(-0.48, 0.0), (-0.34, 0.0), (-0.34, 0.06), (0.34, 0.06), (0.34, 0.0), (0.48, 0.0), (0.5, 0.1),
            (0.5, 0.55), (0.4, 0.63), (0.32, 1.0), (-0.32, 1.0), (-0.4, 0.63), (-0.5, 0.55), (-0.5, 0.1)]
CAR_SIDE = [(-0.5, 0.15), (-0.42, 0.0), (-0.22, 0.0), (-0.18, 0.08), (0.18, 0.08), (0.22, 0.0), (0.42, 0.0),
            (0.5, 0.15), (0.5, 0.5), (0.3, 0.55), (0.15, 0.95), (-0.22, 0.95), (-0.36, 0.58), (-0.5, 0.52)]
BOX_REAR = [(-0.5, 0.0), (-0.3, 0.0), (-0.3, 0.04), (0.3, 0.04), (0.3, 0.0), (0.5, 0.0), (0.5, 1.0), (-0.5, 1.0)]
TRUCK_SIDE = [(-0.5, 0.12), (-0.45, 0.0), (-0.3, 0.0), (-0.28, 0.1), (0.25, 0.1), (0.3, 0.0), (0.45, 0.0),
              (0.5, 0.12), (0.5, 0.62), (0.42, 0.72), (0.27, 0.72), (0.27, 1.0), (-0.5, 1.0)]
BUS_SIDE = [(-0.5, 0.08), (-0.46, 0.0), (0.46, 0.0), (0.5, 0.08), (0.5, 0.97), (0.47, 1.0), (-0.47, 1.0),
            (-0.5, 0.97)]
MOTO_REAR = [(-0.18, 0.0), (0.18, 0.0), (0.25, 0.35), (0.5, 0.62), (0.45, 0.72), (-0.45, 0.72), (-0.5, 0.62),
             (-0.25, 0.35)]
TWO_WHEELER_SIDE = [(-0.5, 0.3), (-0.42, 0.05), (-0.3, 0.0), (-0.18, 0.05), (-0.1, 0.3), (0.1, 0.3), (0.18, 0.05),
                    (0.3, 0.0), (0.42, 0.05), (0.5, 0.3), (0.42, 0.55), (0.3, 0.62), (0.25, 0.95), (0.15, 0.95),
                    (0.05, 0.62), (-0.3, 0.62), (-0.42, 0.55)]
PERSON = [(-0.22, 0.0), (-0.06, 0.0), (-0.02, 0.45), (0.02, 0.45), (0.06, 0.0), (0.22, 0.0), (0.17, 0.5),
          (0.25, 0.55), (0.25, 0.8), (0.12, 0.85), (0.08, 0.87), (0.1, 0.95), (0.0, 1.0), (-0.1, 0.95),
          (-0.08, 0.87), (-0.12, 0.85), (-0.25, 0.8), (-0.25, 0.55), (-0.17, 0.5)]
RIDER = [(-0.3, 0.0), (-0.1, 0.0), (0.0, 0.3), (0.15, 0.35), (0.3, 0.6), (0.35, 0.75), (0.15, 0.8),
         (0.12, 0.85), (0.14, 0.95), (0.04, 1.0), (-0.06, 0.95), (-0.04, 0.85), (-0.2, 0.78), (-0.28, 0.45),
         (-0.2, 0.3)]
