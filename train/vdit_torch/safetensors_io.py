"""A small safetensors reader/writer (dtypes F32, F16, BF16).

Layout: an unsigned 64-bit little-endian header length N, then N bytes of JSON
{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
(padded with spaces to a multiple of 8), then the raw little-endian tensor bytes;
offsets count from the first byte after the header.  Tensors are laid out by
decreasing element size, then by name, so every tensor is aligned to its element size
and the byte buffer has no holes.
"""

import json
import struct

import numpy as np
import torch

from osp.st_stream import f32_to_bf16_bits  # noqa: F401 (the one rounding, shared)

ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}


def bf16_bits_to_f32(bits):
    """bf16 bit patterns (uint16) → float32 (exact)."""
    u = np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return u.view(np.float32)


def _to_numpy_f32(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().to(torch.float32).numpy()
    return np.ascontiguousarray(t, dtype=np.float32)


def encode(values, dtype):
    """The little-endian bytes of float32 `values` stored as `dtype`."""
    a = _to_numpy_f32(values)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        h = a.astype("<f2")
        if not np.all(np.isfinite(h)):
            raise ValueError("value out of F16 range")
        return h.tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype!r}")


def decode(raw, dtype, shape):
    """float32 numpy array from raw little-endian bytes of `dtype`."""
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif dtype == "BF16":
        a = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
    else:
        raise ValueError(f"unsupported dtype {dtype!r}")
    return a.reshape(shape)


def quantize(values, dtype):
    """float32 tensor holding exactly the values a reader gets back after storing as dtype."""
    a = _to_numpy_f32(values)
    return torch.from_numpy(decode(encode(a, dtype), dtype, a.shape).copy())


def save(path, tensors, dtypes=None, metadata=None):
    """Writes {name: tensor} (converted to dtypes[name], default F32) and str metadata."""
    dtypes = dtypes or {}
    metadata = metadata or {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("safetensors metadata must map str to str")
    names = sorted(tensors, key=lambda n: (-ITEMSIZE[dtypes.get(n, "F32")], n))
    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    blobs = []
    offset = 0
    for name in names:
        dtype = dtypes.get(name, "F32")
        a = _to_numpy_f32(tensors[name])
        blob = encode(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_header(path):
    """(header dict without __metadata__, metadata dict, data start offset, file size)."""
    with open(path, "rb") as f:
        data = f.read()
    return _parse_header(data, path)[:3] + (len(data),)


def _parse_header(data, path):
    if len(data) < 8:
        raise ValueError(f"{path}: file too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata, 8 + n, data


def load(path, with_dtypes=False):
    """{name: float32 tensor}, metadata (and {name: dtype} when with_dtypes)."""
    with open(path, "rb") as f:
        data = f.read()
    header, metadata, start, data = _parse_header(data, path)
    size = len(data) - start
    tensors, dtypes = {}, {}
    for name, info in header.items():
        dtype, shape = info["dtype"], tuple(info["shape"])
        begin, end = info["data_offsets"]
        if dtype not in ITEMSIZE:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        if not 0 <= begin <= end <= size:
            raise ValueError(f"{path}: tensor {name}: offsets [{begin}, {end}] past the end")
        if end - begin != int(np.prod(shape, dtype=np.int64)) * ITEMSIZE[dtype]:
            raise ValueError(f"{path}: tensor {name}: {end - begin} bytes for shape {list(shape)}")
        a = decode(data[start + begin:start + end], dtype, shape)
        tensors[name] = torch.from_numpy(a.copy())
        dtypes[name] = dtype
    if with_dtypes:
        return tensors, metadata, dtypes
    return tensors, metadata
