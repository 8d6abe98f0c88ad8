"""Training curves as a PNG without a plotting library: accuracy (0..1) against training
hours, one coloured polyline per metric, grid lines every 0.25 and every hour (or every
`x_grid`).  No text: the caption in docs/training.md names the colours."""

import json

import numpy as np

import pngio

COLOURS = {"colour": (220, 40, 40), "shape": (40, 160, 40), "motion": (40, 80, 230),
           "consistency": (150, 150, 150)}


def _line(img, x0, y0, x1, y1, rgb, width=2):
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    for i in range(n + 1):
        x = round(x0 + (x1 - x0) * i / n)
        y = round(y0 + (y1 - y0) * i / n)
        img[max(0, y - width // 2):y + (width + 1) // 2,
            max(0, x - width // 2):x + (width + 1) // 2] = rgb


def plot(series, path, width=640, height=320, x_grid=1.0, x_max=None):
    """series: {name: [(hours, value)]} → PNG at path."""
    m = 20
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    xs = [h for pts in series.values() for h, _ in pts]
    x_max = x_max or (max(xs) if xs else 1.0) or 1.0
    W, H = width - 2 * m, height - 2 * m

    def px(h, v):
        return m + W * h / x_max, m + H * (1.0 - v)
    for k in range(5):
        y = round(m + H * k / 4)
        img[y, m:m + W + 1] = 200
    k = 0
    while k * x_grid <= x_max + 1e-9:
        x = round(m + W * k * x_grid / x_max)
        img[m:m + H + 1, x] = 200
        k += 1
    img[m + H, m:m + W + 1] = 0
    img[m:m + H + 1, m] = 0
    for name, pts in series.items():
        rgb = COLOURS.get(name, (0, 0, 0))
        for (h0, v0), (h1, v1) in zip(pts, pts[1:]):
            _line(img, *px(h0, v0), *px(h1, v1), rgb)
        for h, v in pts:
            x, y = px(h, v)
            img[round(y) - 2:round(y) + 3, round(x) - 2:round(x) + 3] = rgb
    pngio.write_png(path, img)


def plot_evals(evals_jsonl, path, metrics=("colour", "shape", "motion"), **kw):
    with open(evals_jsonl, encoding="utf-8") as f:
        evals = [json.loads(line) for line in f if line.strip()]
    plot({k: [(e["hours"], e[k]) for e in evals] for k in metrics}, path, **kw)
