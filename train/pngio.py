"""Minimal PNG reader and writer (8-bit RGB/RGBA/grey, non-interlaced) with zlib and numpy,
and a contact sheet of clips.  Enough for the engine's PNG frames and our own images."""

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type → channels


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))


def write_png(path, rgb):
    """rgb: uint8 [H, W, 3]."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    if c != 3:
        raise ValueError("write_png wants [H, W, 3]")
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter 0 per row
    with open(path, "wb") as f:
        f.write(SIGNATURE)
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(_chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(_chunk(b"IEND", b""))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path):
    """uint8 [H, W, 3] (grey and alpha are converted; 8-bit, non-interlaced only)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != SIGNATURE:
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if hdr is None:
        raise ValueError(f"{path}: no IHDR")
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in CHANNELS or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced grey/RGB/RGBA PNG is read")
    bpp = CHANNELS[ctype]
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride,
                             offset=y * (stride + 1) + 1).astype(np.int32)
        if ft == 0:
            cur = line
        elif ft == 2:
            cur = (line + prev) & 255
        elif ft in (1, 3, 4):  # depend on the left neighbour: per byte
            cur = line.copy()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                if ft == 1:
                    cur[i] = (cur[i] + a) & 255
                elif ft == 3:
                    cur[i] = (cur[i] + ((a + prev[i]) >> 1)) & 255
                else:
                    c = prev[i - bpp] if i >= bpp else 0
                    cur[i] = (cur[i] + _paeth(a, prev[i], c)) & 255
        else:
            raise ValueError(f"{path}: bad filter type {ft}")
        out[y] = cur
        prev = cur
    img = out.reshape(h, w, bpp)
    if bpp == 1:
        return np.repeat(img, 3, axis=2)
    if bpp == 2:
        return np.repeat(img[..., :1], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def contact_sheet(rows, scale=2, gap=2, background=255):
    """rows: list of uint8 clips [T, H, W, 3] → one image, a row per clip, frames left to
    right, each pixel repeated `scale` times."""
    T = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[1] * scale, rows[0].shape[2] * scale
    H = len(rows) * (h + gap) + gap
    W = T * (w + gap) + gap
    sheet = np.full((H, W, 3), background, dtype=np.uint8)
    for i, clip in enumerate(rows):
        for t in range(clip.shape[0]):
            y, x = gap + i * (h + gap), gap + t * (w + gap)
            sheet[y:y + h, x:x + w] = clip[t].repeat(scale, 0).repeat(scale, 1)
    return sheet
