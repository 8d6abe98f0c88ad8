"""Prompt adherence of a clip, measured from its frames alone (SynthBench's judge).

A clip is uint8 [T, H, W, 3].  The background is the median of the border pixels; the
object is the largest connected set of pixels far from it.  From that mask:
- colour: nearest palette colour to the median object pixel;
- shape: best intersection-over-union against each shape's template drawn at the
  mask's centroid with the mask's area (a few rotations), majority over frames;
- direction: the centroid track's fitted displacement; left/right/up/down when it
  exceeds 15 % of the frame side, else "none";
- consistency: mean IoU of consecutive masks after moving one onto the other's
  centroid (1 = the object keeps its shape and size from frame to frame).
"""

from collections import Counter

import numpy as np

import synthvideo as sv

THRESHOLD = 0.3       # RGB distance (0..1 units) from the background that marks the object
MIN_AREA = 4          # pixels: smaller masks count as "no object in this frame"
MOVE_FRACTION = 0.15  # of the frame side: smaller displacements are "none"
ANGLES = np.deg2rad([-30, -15, 0, 15, 30, 45, 60, 75])


def _largest_component(mask):
    """Largest 4-connected component of a 2-D bool mask."""
    h, w = mask.shape
    label = np.zeros((h, w), dtype=np.int32)
    best, best_n, cur = None, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if label[y0, x0]:
            continue
        cur += 1
        stack, pix = [(y0, x0)], []
        label[y0, x0] = cur
        while stack:
            y, x = stack.pop()
            pix.append((y, x))
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not label[yy, xx]:
                    label[yy, xx] = cur
                    stack.append((yy, xx))
        if len(pix) > best_n:
            best, best_n = cur, len(pix)
    return label == best if best else np.zeros_like(mask)


_UNIT_AREA = {}


def _unit_area(shape):
    """Area of a shape of radius 1 (measured on a fine grid)."""
    if shape not in _UNIT_AREA:
        g = (np.arange(400) + 0.5) / 100.0 - 2.0
        d = sv._sdf(shape, g[None, :], g[:, None], 1.0)
        _UNIT_AREA[shape] = float((d < 0).sum()) / 100.0 ** 2
    return _UNIT_AREA[shape]


def _template(shape, cy, cx, area, angle, h, w):
    r = np.sqrt(area / _unit_area(shape))
    py = (np.arange(h) + 0.5)[:, None] - cy
    px = (np.arange(w) + 0.5)[None, :] - cx
    ca, sa = np.cos(angle), np.sin(angle)
    return sv._sdf(shape, ca * px + sa * py, -sa * px + ca * py, r) < 0


def _iou(a, b):
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum()) / u if u else 0.0


def classify_shape(mask):
    ys, xs = np.nonzero(mask)
    cy, cx, area = ys.mean() + 0.5, xs.mean() + 0.5, float(len(ys))
    scores = {s: max(_iou(mask, _template(s, cy, cx, area, a, *mask.shape)) for a in ANGLES)
              for s in sv.SHAPES}
    return max(scores, key=scores.get)


def analyse(frames):
    """dict: detected (fraction of frames with an object), colour, shape, direction,
    displacement (dx, dy in pixels), consistency."""
    f = np.asarray(frames, dtype=np.float32) / 255.0
    T, H, W, _ = f.shape
    border = np.concatenate([f[:, 0].reshape(-1, 3), f[:, -1].reshape(-1, 3),
                             f[:, :, 0].reshape(-1, 3), f[:, :, -1].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    far = np.sqrt(((f - bg) ** 2).sum(-1)) > THRESHOLD
    masks = [_largest_component(far[t]) for t in range(T)]
    seen = [t for t in range(T) if masks[t].sum() >= MIN_AREA]
    out = {"detected": len(seen) / T, "colour": None, "shape": None, "direction": None,
           "displacement": (0.0, 0.0), "consistency": 0.0}
    if not seen:
        return out
    pix = np.concatenate([f[t][masks[t]] for t in seen])
    med = np.median(pix, axis=0)
    names = list(sv.COLOURS)
    dist = [np.sum((med - np.array(sv.COLOURS[c])) ** 2) for c in names]
    out["colour"] = names[int(np.argmin(dist))]
    votes = Counter(classify_shape(masks[t]) for t in seen)
    out["shape"] = votes.most_common(1)[0][0]
    cent = np.array([[np.nonzero(masks[t])[1].mean(), np.nonzero(masks[t])[0].mean()]
                     for t in seen])
    if len(seen) >= max(2, T // 2):
        ts = np.array(seen, dtype=np.float64)
        slope = np.polyfit(ts, cent, 1)[0]          # pixels per frame (x, y)
        dx, dy = slope * (T - 1)
        out["displacement"] = (float(dx), float(dy))
        side = min(H, W)
        if max(abs(dx), abs(dy)) < MOVE_FRACTION * side:
            out["direction"] = "none"
        elif abs(dx) >= abs(dy):
            out["direction"] = "right" if dx > 0 else "left"
        else:
            out["direction"] = "down" if dy > 0 else "up"
    else:
        out["direction"] = "none"
    ious = []
    for a, b in zip(seen, seen[1:]):
        ca, cb = cent[seen.index(a)], cent[seen.index(b)]
        sy, sx = int(round(cb[1] - ca[1])), int(round(cb[0] - ca[0]))
        moved = np.roll(np.roll(masks[a], sy, axis=0), sx, axis=1)
        ious.append(_iou(moved, masks[b]))
    out["consistency"] = float(np.mean(ious)) if ious else 0.0
    return out


ATTRIBUTES = ("colour", "shape", "motion", "consistency")


def per_clip(results):
    """results: [(analysis, (colour, shape, motion, background))] → {attribute: one
    value per clip}; motion is None where the prompt has no direction."""
    return {
        "colour": [float(a["colour"] == c[0]) for a, c in results],
        "shape": [float(a["shape"] == c[1]) for a, c in results],
        "motion": [float(a["direction"] == c[2]) if c[2] in sv.DIRECTIONS else None
                   for a, c in results],
        "consistency": [float(a["consistency"]) for a, _ in results],
    }


def score(results):
    """results as for per_clip() → accuracies (0..1): colour, shape, motion (direction
    prompts only), consistency, detected, and shape_by: the shape accuracy of the clips
    of each prompted shape (the shape score hides which shapes a model cannot draw)."""
    if not results:
        return {}
    pc = per_clip(results)
    motion = [m for m in pc["motion"] if m is not None]
    by = {}
    for (_, c), ok in zip(results, pc["shape"]):
        by.setdefault(c[1], []).append(ok)
    return {
        "colour": float(np.mean(pc["colour"])),
        "shape": float(np.mean(pc["shape"])),
        "motion": float(np.mean(motion)) if motion else 0.0,
        "consistency": float(np.mean(pc["consistency"])),
        "detected": float(np.mean([a["detected"] for a, _ in results])),
        "shape_by": {k: float(np.mean(by[k])) for k in sv.SHAPES if k in by},
    }


def paired_difference(a, b):
    """Per-clip scores of two settings on the same prompts and seeds → {attribute:
    (mean of a − b, its standard error)}.  Pairing cancels what the prompt and the noise
    seed decide alike for both, so the error is smaller than that of either mean."""
    out = {}
    for k in ATTRIBUTES:
        d = np.array([x - y for x, y in zip(a[k], b[k]) if x is not None and y is not None])
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        out[k] = (float(d.mean()) if len(d) else 0.0, se)
    return out
