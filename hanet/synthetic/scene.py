"""Procedural urban street scenes with Cityscapes labels.

A scene is a perspective street seen from a car: sky at the top; far buildings on
the horizon; facades, trees, walls and fences along two sidewalks; a road narrowing
to a vanishing point; then, sorted far to near, poles carrying traffic signs and
lights, trees, people, riders on bicycles and motorcycles, cars, trucks, buses and
trams (on rail tracks), bins and boxes; last the ego vehicle's bonnet.  Everything
is a polygon with a Cityscapes label, drawn back to front, so the label image is
exactly what cityscapesscripts' ``json2labelImg`` makes of the polygon list.
Sizes follow a camera 1.5 m above the ground: an object standing on row y is
(y - horizon) / 1.5 pixels per metre tall, so cars sit on the road band, signs and
lights high up, buses and trams reach far above cars.

The scenes are built so that height matters, as HANet assumes:

* colours vary per image and per object, with textures (noise, window grids,
  stripes, spokes), lighting gradients, sharp-edged cast shadows, a global colour
  cast/contrast/gamma, sensor noise and sometimes blur;
* classes that look alike differ by height: in some images the road is painted
  with the sky's colour and texture (overcast sky over grey asphalt), or the
  sidewalk with a facade's; terrain and vegetation share greens; walls share
  facade colours; cars, trucks, buses and trams share one paint/glass palette and
  differ by where their body reaches; persons and riders share clothes;
* all 19 train classes appear (rare ones are forced in turn, one per image index),
  plus ignored labels: ego vehicle, rectification border, out of roi, static,
  dynamic, ground, parking, rail track, guard rail, bridge, caravan, trailer,
  unlabeled.

Appearance-only parts (windows, wheels, lamps, lane marks, sign symbols) are drawn
inside their object and never change its label.
"""
from __future__ import annotations

import numpy as np

from .render import render
from .shapes import (BOX_REAR, BUS_SIDE, CAR_REAR, CAR_SIDE, MOTO_REAR, PERSON, RIDER, TRUCK_SIDE,
                     TWO_WHEELER_SIDE, SceneObject, clip_polygon, ellipse, look, rect, template)

# Classes forced into image i in turn (i % len), so that any run of this many
# images shows every rare class at least once.
FORCED = ("train", "bus", "truck", "motorcycle", "rider", "bicycle", "wall", "fence", "terrain",
          "traffic light", "traffic sign", "person")


class SceneBuilder:
    """Builds one scene: ``objects`` in drawing order (see ``build``)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, forced: str | None = None):
        self.rng, self.h, self.w, self.forced = rng, height, width, forced
        self.background: list[SceneObject] = []
        self.ground: list[tuple[float, int, SceneObject]] = []  # (depth key, order, object)
        self.front: list[SceneObject] = []
        self._order = 0

    # -- helpers -------------------------------------------------------------------------------

    def p(self, name: str, default: float) -> bool:
        """A random event of probability ``default``; certain for the forced class."""
        return name == self.forced or self.rng.random() < default

    def jit(self, rgb, amount=12.0):
        return np.clip(np.asarray(rgb, dtype=np.float64) + self.rng.normal(0, amount, 3), 0, 255)

    def make(self, label, poly, lk, parts=()) -> SceneObject | None:
        clipped = clip_polygon(poly, self.w, self.h)
        if clipped is None:
            return None
        kept = []
        for pp, plk in parts:
            c = clip_polygon(pp, self.w, self.h)
            if c is not None:
                kept.append((c, plk))
        return SceneObject(label, clipped, lk, kept)

    def add_bg(self, label, poly, lk, parts=()):
        obj = self.make(label, poly, lk, parts)
        if obj is not None:
            self.background.append(obj)

    def add_ground(self, depth, label, poly, lk, parts=(), last=False):
        """A standing object; drawn far to near by ``depth`` (its ground row), or
        after all others when ``last`` (the forced class, kept visible)."""
        obj = self.make(label, poly, lk, parts)
        if obj is not None:
            self._order += 1
            self.ground.append((depth + (1e6 if last else 0.0), self._order, obj))

    # -- geometry of the street ----------------------------------------------------------------

    def layout(self):
        r, h, w = self.rng, self.h, self.w
        self.yh = h * r.uniform(0.33, 0.5)  # horizon row
        self.xvp = w * r.uniform(0.3, 0.7)  # vanishing point column
        self.g = h - self.yh
        self.xl_b = self.xvp - w * r.uniform(0.3, 0.8)  # road edges on the bottom row
        self.xr_b = self.xvp + w * r.uniform(0.3, 0.8)
        self.r0 = w * 0.004
        self.ybl = self.yh + self.g * r.uniform(0.08, 0.45)  # facade base lines at the image sides
        self.ybr = self.yh + self.g * r.uniform(0.08, 0.45)

    def road_x(self, y, side):
        t = (y - self.yh) / self.g
        if side < 0:
            return self.xvp - self.r0 + (self.xl_b - self.xvp + self.r0) * t
        return self.xvp + self.r0 + (self.xr_b - self.xvp - self.r0) * t

    def base_y(self, x):
        """Row of the facade base line at column x."""
        if x <= self.xvp:
            return self.yh + (self.ybl - self.yh) * (self.xvp - x) / self.xvp
        return self.yh + (self.ybr - self.yh) * (x - self.xvp) / (self.w - self.xvp)

    def base_x(self, y, side):
        """Column of the facade base line at row y (may be outside the image)."""
        yb = self.ybl if side < 0 else self.ybr
        t = (y - self.yh) / (yb - self.yh)
        return self.xvp - t * self.xvp if side < 0 else self.xvp + t * (self.w - self.xvp)

    def ppm(self, y):
        """Pixels per metre of an object standing on row y (camera 1.5 m high)."""
        return max(y - self.yh, 0.5) / 1.5

    # -- palettes ------------------------------------------------------------------------------

    def style(self):
        r = self.rng
        weather = r.choice(["sunny", "overcast", "dusk"], p=[0.45, 0.35, 0.2])
        self.weather = weather
        if weather == "sunny":
            sky = look(self.jit((110, 160, 225), 20), fine=1.5, coarse=r.uniform(3, 10), vgrad=r.uniform(15, 35))
        elif weather == "overcast":
            g = r.uniform(150, 225)
            sky = look(self.jit((g, g, g + 5), 6), fine=2.0, coarse=r.uniform(6, 16), vgrad=r.uniform(5, 20))
        else:
            sky = look(self.jit((225, 165, 130), 20), fine=1.5, coarse=r.uniform(4, 12), vgrad=r.uniform(20, 45))
        self.sky = sky
        g = r.uniform(60, 140)
        self.road = look(self.jit((g, g, g + r.uniform(-5, 8)), 5), fine=r.uniform(5, 12), coarse=r.uniform(4, 10))
        self.sky_like_road = r.random() < 0.3
        if self.sky_like_road:  # overcast sky over pale asphalt: only height tells them apart
            self.road = sky.copy()
            self.road[3] = max(sky[3], 3.0)
            self.road[8] = 0.0
        facade_base = [(200, 190, 170), (150, 150, 150), (170, 110, 90), (225, 220, 210), (120, 115, 110),
                       (190, 170, 140)]
        self.facades = [look(self.jit(facade_base[r.integers(len(facade_base))], 18), fine=r.uniform(3, 8),
                             coarse=r.uniform(3, 8), windows=-r.uniform(25, 70), hstripes=r.uniform(0, 6))
                        for _ in range(4)]
        pav = [(170, 165, 160), (160, 120, 110), (140, 140, 145), (190, 185, 170)]
        self.sidewalk = look(self.jit(pav[r.integers(len(pav))], 14), fine=r.uniform(5, 10), coarse=r.uniform(3, 8),
                             hstripes=r.uniform(2, 7), vstripes=r.uniform(0, 5))
        self.building_like_sidewalk = r.random() < 0.3
        if self.building_like_sidewalk:  # facades of the paving's stone: only height separates them
            self.sidewalk = self.facades[0].copy()
            self.sidewalk[5] = 0.0
            for f in self.facades:
                f[5] *= 0.3
        self.green = self.jit((75, 125, 45), 18)
        self.veg = look(self.green, fine=r.uniform(10, 20), coarse=r.uniform(8, 18))
        terrain_rgb = self.green if r.random() < 0.5 else self.jit((140, 150, 80), 20)
        self.terrain = look(self.jit(terrain_rgb, 6), fine=r.uniform(6, 14), coarse=r.uniform(4, 10))
        self.glass = look(self.jit((45, 55, 70), 10), fine=2, vgrad=r.uniform(-25, 5))
        self.tyre = look(self.jit((28, 28, 30), 4), fine=3)

    def paint(self):
        """A vehicle colour: shared by cars, trucks, buses, trams and motorcycles."""
        base = [(20, 20, 22), (225, 225, 225), (160, 162, 168), (110, 110, 115), (170, 30, 30), (30, 60, 140),
                (20, 35, 80), (40, 90, 50), (220, 190, 40)]
        return look(self.jit(base[self.rng.integers(len(base))], 10), fine=self.rng.uniform(1, 4),
                    coarse=2.0, vgrad=self.rng.uniform(-20, 10))

    def clothes(self):
        return look(self.jit(self.rng.uniform(20, 230, 3), 10), fine=self.rng.uniform(3, 8))

    # -- scene parts ---------------------------------------------------------------------------

    def sky_and_horizon(self):
        r, h, w, yh = self.rng, self.h, self.w, self.yh
        self.add_bg("sky", rect(0, 0, w, yh + 2), self.sky)
        x0, x1 = self.xvp - w * r.uniform(0.1, 0.25), self.xvp + w * r.uniform(0.1, 0.25)
        xs = np.sort(r.uniform(x0, x1, r.integers(2, 6)))
        for a, b in zip(np.r_[x0, xs], np.r_[xs, x1]):
            top = yh - h * r.uniform(0.02, 0.16)
            if r.random() < 0.75:
                self.add_bg("building", rect(a, top, b, yh + self.g * 0.03), self.facades[r.integers(4)])
            else:
                pts = [(a, yh + 2)] + [(x, top - h * 0.03 * r.random()) for x in np.linspace(a, b, 6)] + [(b, yh + 2)]
                self.add_bg("vegetation", pts, self.veg)
        if r.random() < 0.08:  # a bridge across the street, high up: ignored
            y0 = yh - h * r.uniform(0.15, 0.3)
            self.add_bg("bridge", rect(0, y0, w, y0 + h * r.uniform(0.03, 0.07)),
                        look(self.jit((120, 115, 110), 15), fine=5, coarse=6))

    def ground_plane(self):
        r, h, w, yh = self.rng, self.h, self.w, self.yh
        self.add_bg("sidewalk", rect(0, yh, w, h), self.sidewalk)
        road = [(self.xvp - self.r0, yh), (self.xvp + self.r0, yh), (self.xr_b, h), (self.xl_b, h)]
        marks = []
        if not (self.sky_like_road and r.random() < 0.5):
            mark = look(self.jit((225, 225, 215) if r.random() < 0.8 else (220, 190, 60), 10), fine=6)
            xc_b = 0.5 * (self.xl_b + self.xr_b) + w * r.uniform(-0.05, 0.05)
            period, duty = r.uniform(0.12, 0.25), r.uniform(0.4, 0.6)
            t = r.uniform(0, period)
            while t < 1.0:  # dashes of the centre line, widening with depth
                t0, t1 = t, min(1.0, t + period * duty)
                y0, y1 = yh + self.g * t0 ** 1.6, yh + self.g * t1 ** 1.6
                x0 = self.xvp + (xc_b - self.xvp) * (y0 - yh) / self.g
                x1 = self.xvp + (xc_b - self.xvp) * (y1 - yh) / self.g
                hw0, hw1 = 0.004 * w * (y0 - yh) / self.g + 0.3, 0.004 * w * (y1 - yh) / self.g + 0.3
                marks.append(([(x0 - hw0, y0), (x0 + hw0, y0), (x1 + hw1, y1), (x1 - hw1, y1)], mark))
                t += period
        self.add_bg("road", road, self.road, marks)
        if self.p("train", 0.1):  # tram rails: an ignored band in the middle of the road
            self.rail = True
            xc_b = 0.5 * (self.xl_b + self.xr_b)
            half = 0.12 * (self.xr_b - self.xl_b)
            self.add_bg("rail track", [(self.xvp - 1, yh), (self.xvp + 1, yh), (xc_b + half, h), (xc_b - half, h)],
                        look(self.jit((105, 95, 85), 10), fine=10, hstripes=12))
        else:
            self.rail = False
        side = -1 if r.random() < 0.5 else 1
        if self.p("terrain", 0.35):  # a grass verge along one road edge
            k = r.uniform(0.08, 0.2)
            out = self.road_x(h, side) + side * k * (self.xr_b - self.xl_b)
            self.add_bg("terrain", [(self.road_x(yh, side), yh), (self.road_x(yh, side) + side * 2, yh), (out, h),
                                    (self.road_x(h, side), h)], self.terrain)
        if r.random() < 0.15:  # parking strip on the other side
            k = r.uniform(0.05, 0.15)
            out = self.road_x(h, -side) - side * k * (self.xr_b - self.xl_b)
            self.add_bg("parking", [(self.road_x(yh, -side), yh), (out, h), (self.road_x(h, -side), h)],
                        look(self.jit((120, 110, 115), 10), fine=8))
        if r.random() < 0.1:
            x, y = r.uniform(0, w), yh + self.g * r.uniform(0.3, 0.9)
            self.add_bg("ground", ellipse(x, y, w * 0.06, self.g * 0.05, 10, r, 0.3),
                        look(self.jit((120, 100, 80), 15), fine=10))

    def facades_side(self, side):
        r, h, w, yh = self.rng, self.h, self.w, self.yh
        x_edge = 0.0 if side < 0 else float(w)
        x_end = self.xvp + side * w * r.uniform(0.06, 0.15)
        span = x_end - x_edge
        cuts = np.sort(r.uniform(0.1, 0.9, r.integers(1, 5)))
        xs = [x_edge + span * c for c in np.r_[0.0, cuts, 1.0]]
        for a, b in zip(xs[:-1], xs[1:]):
            da, db = abs(a - self.xvp) / abs(x_edge - self.xvp), abs(b - self.xvp) / abs(x_edge - self.xvp)
            tall = h * r.uniform(0.3, 1.3)
            ta, tb = yh - tall * da - h * 0.03, yh - tall * db - h * 0.03
            if r.random() < 0.3:
                tb = ta  # flat roof line
            if r.random() < 0.72:
                self.add_bg("building", [(a, ta), (b, tb), (b, self.base_y(b)), (a, self.base_y(a))],
                            self.facades[r.integers(4)])
            else:
                xx = np.linspace(a, b, 9)
                top = [(x, ta + (tb - ta) * i / 8 - h * 0.06 * r.random()) for i, x in enumerate(xx)]
                self.add_bg("vegetation", top + [(b, self.base_y(b)), (a, self.base_y(a))], self.veg)
        for name, prob in (("wall", 0.35), ("fence", 0.35)):
            if self.p(name, prob) and (name != self.forced or side < 0):
                ca, cb = np.sort(r.uniform(0.0, 1.0, 2))
                if name == self.forced:
                    ca, cb = 0.0, max(cb, 0.6)
                a, b = x_edge + span * ca, x_edge + span * cb
                hm = r.uniform(0.6, 1.6)  # metres
                ya, yb = self.base_y(a), self.base_y(b)
                pts = [(a, ya - hm * self.ppm(ya)), (b, yb - hm * self.ppm(yb)), (b, yb + 1), (a, ya + 1)]
                if name == "wall":
                    lk = self.facades[r.integers(4)].copy() if r.random() < 0.5 else look(
                        self.jit((150, 140, 130), 25), fine=6, coarse=6)
                    lk[5] = 0.0
                else:
                    lk = look(self.jit((130, 115, 95) if r.random() < 0.5 else (110, 120, 115), 20), fine=5,
                              vstripes=r.uniform(20, 45), hstripes=r.uniform(0, 8))
                self.add_bg(name, pts, lk)
        if r.random() < 0.1:  # a guard rail along the road edge
            ya, yb = yh + self.g * 0.1, h
            pts = [(self.road_x(ya, side), ya), (self.road_x(yb, side), yb),
                   (self.road_x(yb, side), yb - 0.8 * self.ppm(yb)), (self.road_x(ya, side), ya - 0.8 * self.ppm(ya))]
            self.add_bg("guard rail", pts, look(self.jit((170, 170, 175), 10), fine=3, hstripes=10))

    def sidewalk_point(self, side, near_road=False):
        """A ground point (x, y) on the sidewalk of ``side``."""
        r = self.rng
        y = self.yh + self.g * r.uniform(0.04, 0.95) ** 1.3
        xr, xb = self.road_x(y, side), self.base_x(y, side)
        t = r.uniform(0.02, 0.25) if near_road else r.uniform(0.05, 0.95)
        return xr + (xb - xr) * t, y

    def pole(self, force_sign=False, force_light=False, last=False):
        r = self.rng
        side = -1 if r.random() < 0.5 else 1
        x, y = self.sidewalk_point(side, near_road=True)
        if last:
            y = self.yh + self.g * r.uniform(0.2, 0.45)
            x = self.road_x(y, side) - side * 0.6 * self.ppm(y)
        m = self.ppm(y)
        height, width = r.uniform(3.5, 7.5) * m, max(1.0, r.uniform(0.12, 0.25) * m)
        top = y - height
        grey = look(self.jit((140, 140, 140), 25), fine=3, vgrad=r.uniform(-10, 10))
        light = force_light or r.random() < 0.3
        arm = light and r.random() < 0.5
        if arm:  # an L-shaped pole with its arm over the road
            reach = -side * r.uniform(1.0, 3.5) * m
            tip = x + reach
            thick = max(1.0, 0.15 * m)
            near, far = (x - width / 2, x + width / 2) if reach > 0 else (x + width / 2, x - width / 2)
            poly = [(near, y), (far, y), (far, top + thick), (tip, top + thick), (tip, top), (near, top)]
            self.add_ground(y, "pole", poly, grey, last=last)
            lx, ly = tip, top + thick
        else:
            self.add_ground(y, "pole", rect(x - width / 2, top, x + width / 2, y), grey, last=last)
            lx, ly = x, top
        if light:
            bw, bh = max(2.0, 0.35 * m), max(4.0, 0.95 * m)
            body = rect(lx - bw / 2, ly, lx + bw / 2, ly + bh)
            housing = look(self.jit((35, 35, 30) if r.random() < 0.7 else (160, 140, 40), 10), fine=3)
            lit = r.integers(3)
            parts = []
            for i, c in enumerate([(230, 40, 30), (240, 180, 30), (40, 220, 90)]):
                cy = ly + bh * (0.2 + 0.3 * i)
                rgb = c if i == lit else (60, 60, 55)
                parts.append((ellipse(lx, cy, bw * 0.3, bh * 0.11, 8), look(self.jit(rgb, 8), fine=4)))
            self.add_ground(y + 0.01, "traffic light", body, housing, parts, last=last)
        if force_sign or (not light and r.random() < 0.75) or r.random() < 0.2:
            s = max(3.0, r.uniform(0.5, 0.9) * m)
            sy = (ly + bh * 1.2 + s * 0.6) if light else top + s * 0.6
            sx = x + (side * s * 0.5 if not arm else 0.0)
            kind = r.integers(4)
            if kind == 0:
                poly = ellipse(sx, sy, s / 2, s / 2, 12)
            elif kind == 1:
                poly = [(sx - s / 2, sy + s * 0.4), (sx + s / 2, sy + s * 0.4), (sx, sy - s * 0.5)]
            elif kind == 2:
                poly = rect(sx - s / 2, sy - s / 2, sx + s / 2, sy + s / 2)
            else:
                poly = rect(sx - s, sy - s * 0.3, sx + s, sy + s * 0.3)
            rgb = [(200, 30, 30), (30, 70, 180), (230, 200, 40), (230, 230, 230)][r.integers(4)]
            sym = look(self.jit((240, 240, 240) if sum(rgb) < 500 else (20, 20, 20), 10), fine=2)
            parts = [(ellipse(sx, sy, s * 0.18, s * 0.18, 8), sym)]
            self.add_ground(y + 0.02, "traffic sign", poly, look(self.jit(rgb, 12), fine=3), parts, last=last)

    def tree(self):
        r = self.rng
        x, y = self.sidewalk_point(-1 if r.random() < 0.5 else 1)
        m = self.ppm(y)
        trunk_h, crown = r.uniform(2.0, 4.0) * m, r.uniform(1.2, 2.8) * m
        trunk = look(self.jit((90, 70, 50), 12), fine=8)
        self.add_ground(y, "vegetation", rect(x - 0.15 * m, y - trunk_h - crown * 0.5, x + 0.15 * m, y), trunk)
        self.add_ground(y + 0.001, "vegetation", ellipse(x, y - trunk_h - crown, crown, crown * 1.1, 16, r, 0.15),
                        self.veg)

    def person(self, y=None, x=None, last=False):
        r = self.rng
        if y is None:
            if r.random() < 0.8:
                x, y = self.sidewalk_point(-1 if r.random() < 0.5 else 1)
            else:  # crossing the road
                y = self.yh + self.g * r.uniform(0.1, 0.8)
                x = r.uniform(self.road_x(y, -1), self.road_x(y, 1))
        m = self.ppm(y)
        hgt, wid = r.uniform(1.55, 1.95) * m, r.uniform(0.45, 0.65) * m
        pts = [(u * (1 + r.uniform(-0.1, 0.1)), v) for u, v in PERSON]
        shirt, trousers = self.clothes(), self.clothes()
        skin = look(self.jit((200, 160, 130), 25), fine=3)
        parts = [(template([(-0.3, 0.0), (0.3, 0.0), (0.3, 0.47), (-0.3, 0.47)], x, y, wid, hgt), trousers),
                 (ellipse(x, y - 0.935 * hgt, 0.1 * wid, 0.055 * hgt, 8), skin)]
        self.add_ground(y, "person", template(pts, x, y, wid, hgt), shirt, parts, last=last)

    def vehicle(self, kind, last=False):
        r = self.rng
        side_view = r.random() < (0.3 if kind in ("car", "truck") else 0.6)
        # Depth (0 at the horizon, 1 at the bottom row): mostly far, as in real streets;
        # long side views and trams further away, so they do not fill the frame.
        t = r.uniform(0.15, 0.45) if last else r.uniform(0.03, 1.0) ** 1.7
        if kind == "train":
            t, side_view = r.uniform(0.06, 0.22), True
        elif side_view and kind != "car":
            t = min(t, r.uniform(0.08, 0.4))
        y = self.yh + self.g * t
        m = self.ppm(y)
        xl, xr = self.road_x(y, -1), self.road_x(y, 1)
        x = r.uniform(xl + 0.1 * (xr - xl), xr - 0.1 * (xr - xl))
        body = self.paint()
        if kind == "train":
            x = 0.5 * (xl + xr)
        parts = []
        if kind == "car":
            if side_view:
                wid, hgt = r.uniform(3.8, 4.8) * m, r.uniform(1.35, 1.6) * m
                poly = template(CAR_SIDE, x, y, wid, hgt)
                parts.append((template([(-0.33, 0.58), (-0.2, 0.9), (0.13, 0.9), (0.26, 0.56)], x, y, wid, hgt),
                              self.glass))
                for u in (-0.32, 0.32):
                    parts.append((ellipse(x + u * wid, y - 0.13 * hgt, 0.12 * hgt, 0.12 * hgt, 10), self.tyre))
            else:
                wid, hgt = r.uniform(1.7, 1.95) * m, r.uniform(1.35, 1.6) * m
                poly = template(CAR_REAR, x, y, wid, hgt)
                parts.append((template([(-0.36, 0.64), (0.36, 0.64), (0.29, 0.95), (-0.29, 0.95)], x, y, wid, hgt),
                              self.glass))
                red = look(self.jit((190, 30, 30), 15), fine=3)
                for s in (-1, 1):
                    parts.append((template([(s * 0.47, 0.42), (s * 0.33, 0.42), (s * 0.33, 0.52), (s * 0.47, 0.52)],
                                            x, y, wid, hgt), red))
                    parts.append((template([(s * 0.48, 0.0), (s * 0.34, 0.0), (s * 0.34, 0.1), (s * 0.48, 0.1)],
                                            x, y, wid, hgt), self.tyre))
        elif kind in ("truck", "bus", "train", "caravan", "trailer"):
            if kind == "train":
                wid, hgt = r.uniform(18, 35) * m, r.uniform(3.3, 3.8) * m
            elif side_view:
                wid = r.uniform(6, 12) * m if kind in ("truck", "bus") else r.uniform(4, 7) * m
                hgt = r.uniform(3.0, 3.8) * m if kind in ("truck", "bus") else r.uniform(2.2, 2.8) * m
            else:
                wid, hgt = r.uniform(2.3, 2.6) * m, r.uniform(2.9, 3.8) * m
            if kind == "truck" and side_view:
                poly = template(TRUCK_SIDE, x, y, wid, hgt)
                parts.append((template([(0.32, 0.42), (0.46, 0.42), (0.44, 0.64), (0.32, 0.64)], x, y, wid, hgt),
                              self.glass))
            elif side_view:
                poly = template(BUS_SIDE, x, y, wid, hgt)
                n = max(1, int(wid / max(1.0, 1.4 * m)))
                for i in range(n):  # a row of windows in the upper half
                    u0 = -0.46 + 0.92 * i / n
                    u1 = u0 + 0.92 / n - 0.01
                    parts.append((template([(u0 + 0.01, 0.5), (u1, 0.5), (u1, 0.88), (u0 + 0.01, 0.88)],
                                           x, y, wid, hgt), self.glass))
            else:
                poly = template(BOX_REAR, x, y, wid, hgt)
                if kind == "bus" or r.random() < 0.3:
                    parts.append((template([(-0.42, 0.6), (0.42, 0.6), (0.42, 0.92), (-0.42, 0.92)], x, y, wid, hgt),
                                  self.glass))
            if side_view:
                for u in (-0.35, 0.35):
                    parts.append((ellipse(x + u * wid, y - 0.45 * m, 0.45 * m, 0.45 * m, 10), self.tyre))
            body[6] = r.uniform(0, 8)  # panel lines
        elif kind == "motorcycle":
            if side_view:
                wid, hgt = r.uniform(1.8, 2.2) * m, r.uniform(1.0, 1.25) * m
                poly = template(TWO_WHEELER_SIDE, x, y, wid, hgt)
            else:
                wid, hgt = r.uniform(0.7, 0.9) * m, r.uniform(1.0, 1.25) * m
                poly = template(MOTO_REAR, x, y, wid, hgt)
        self.add_ground(y, kind, poly, body, parts, last=last)
        if kind == "motorcycle" and (self.forced != "motorcycle" or r.random() < 0.7):
            self.rider(x, y, m, side_view, last=last)

    def bicycle(self, ridden=None, last=False):
        r = self.rng
        ridden = r.random() < 0.6 if ridden is None else ridden
        if ridden:
            side = -1 if r.random() < 0.5 else 1
            y = self.yh + self.g * r.uniform(0.2 if last else 0.05, 0.6 if last else 0.95)
            x = self.road_x(y, side) - side * r.uniform(0.5, 2.0) * self.ppm(y)
        else:
            x, y = self.sidewalk_point(-1 if r.random() < 0.5 else 1)
        m = self.ppm(y)
        side_view = r.random() < 0.7
        wid, hgt = (r.uniform(1.6, 1.8) * m if side_view else 0.5 * m), r.uniform(0.95, 1.1) * m
        lk = look(self.jit((60, 60, 65) if r.random() < 0.6 else self.rng.uniform(30, 200, 3), 15), fine=6,
                  vstripes=r.uniform(15, 35))
        poly = template(TWO_WHEELER_SIDE if side_view else MOTO_REAR, x, y, wid, hgt)
        self.add_ground(y, "bicycle", poly, lk, last=last)
        if ridden:
            self.rider(x, y, m, side_view, last=last)

    def rider(self, x, y, m, side_view, last=False):
        r = self.rng
        hgt, wid = r.uniform(1.35, 1.55) * m, (0.65 if side_view else 0.5) * m
        skin = look(self.jit((200, 160, 130), 25), fine=3)
        parts = [(ellipse(x, y - 0.3 * m - 0.94 * hgt, 0.08 * wid, 0.05 * hgt, 8), skin)]
        self.add_ground(y + 0.0005, "rider", template(RIDER, x, y - 0.3 * m, wid, hgt), self.clothes(), parts,
                        last=last)

    def clutter(self):
        r = self.rng
        for _ in range(r.integers(0, 4)):
            x, y = self.sidewalk_point(-1 if r.random() < 0.5 else 1)
            m = self.ppm(y)
            a, b = r.uniform(0.4, 1.0) * m, r.uniform(0.6, 1.3) * m
            label = "static" if r.random() < 0.7 else "dynamic"
            self.add_ground(y, label, rect(x - a / 2, y - b, x + a / 2, y),
                            look(self.jit(r.uniform(30, 200, 3), 10), fine=5, hstripes=r.uniform(0, 8)))

    def ego_and_borders(self):
        r, h, w = self.rng, self.h, self.w
        if r.random() < 0.75:
            eh = h * r.uniform(0.06, 0.13)
            xs = np.linspace(0, w, 17)
            top = [(x, h - eh * (1 - 0.45 * ((x - w / 2) / (w / 2)) ** 2)) for x in xs]
            self.front.append(self.make("ego vehicle", top + [(w, h), (0, h)],
                                        look(self.jit((25, 25, 30), 8), fine=3, coarse=4, vgrad=r.uniform(10, 40))))
        if r.random() < 0.2:
            for x0 in (0, w):
                s = w * r.uniform(0.03, 0.08)
                xa = x0 + (s if x0 == 0 else -s)
                self.front.append(self.make("rectification border", [(x0, h), (x0, h - h * 0.15), (xa, h)],
                                            look((0, 0, 0), fine=2)))
        if r.random() < 0.1:
            self.front.append(self.make("out of roi", rect(0, h - 0.02 * h, w, h), look((10, 10, 10), fine=2)))
        if r.random() < 0.15:
            x = r.uniform(0, w)
            self.front.append(self.make("unlabeled", ellipse(x, r.uniform(0, h), w * 0.03, h * 0.03, 8, r, 0.3),
                                        look(self.jit((90, 90, 90), 40), fine=8)))
        self.front = [o for o in self.front if o is not None]

    # -- the whole scene -----------------------------------------------------------------------

    def build(self) -> list[SceneObject]:
        r, f = self.rng, self.forced
        self.layout()
        self.style()
        self.sky_and_horizon()
        self.ground_plane()
        for side in (-1, 1):
            self.facades_side(side)
        for i in range(r.integers(2, 7)):
            self.pole(force_sign=(i == 0 and f == "traffic sign"), force_light=(i == 0 and f == "traffic light"),
                      last=(i == 0 and f in ("traffic sign", "traffic light")))
        for _ in range(r.integers(0, 4)):
            self.tree()
        for i in range(r.integers(1 if f == "person" else 0, 6)):
            self.person(last=(i == 0 and f == "person"))
        for _ in range(r.integers(1, 7)):
            self.vehicle("car")
        for kind, prob in (("truck", 0.35), ("bus", 0.3), ("motorcycle", 0.3)):
            if self.p(kind, prob):
                self.vehicle(kind, last=(kind == f))
        if self.rail and self.p("train", 0.5):
            self.vehicle("train", last=(f == "train"))
        for kind in ("caravan", "trailer"):
            if r.random() < 0.04:
                self.vehicle(kind)
        if self.p("bicycle", 0.45) or f == "rider":
            self.bicycle(ridden=True if f == "rider" else None, last=f in ("bicycle", "rider"))
        for _ in range(r.integers(0, 3)):
            self.bicycle(ridden=False)
        self.clutter()
        self.ego_and_borders()
        ground = [o for _, _, o in sorted(self.ground, key=lambda t: (t[0], t[1]))]
        return self.background + ground + self.front


def generate_scene(rng: np.random.Generator, height: int, width: int, forced: str | None = None):
    """One scene: (objects, rgb, labelIds, instanceIds); see ``render``."""
    objects = SceneBuilder(rng, height, width, forced).build()
    rgb, label_ids, instance_ids = render(objects, rng, height, width)
    return objects, rgb, label_ids, instance_ids
