"""safetensors files written and read one tensor (or one chunk) at a time, so an 11 GB
checkpoint never sits in memory: the header is computed from the shapes first, then each
tensor's bytes are appended as a producer yields them."""

import json
import struct

import numpy as np

ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}
CHUNK_ELEMS = 1 << 22  # 16 MB of f32 per read or write


def f32_to_bf16_bits(a):
    """float32 → bf16 bit patterns, round to nearest even (finite input)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    if not np.all(np.isfinite(a)):
        raise ValueError("bf16 conversion of a non-finite value")
    rounded = (u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def to_bytes(a, dtype):
    a = np.asarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write(path, entries, metadata=None):
    """entries: [(name, dtype, shape, chunks)] where chunks() yields float32 arrays whose
    sizes add up to prod(shape), in row-major order."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, dtype, shape, _ in entries:
        n = int(np.prod(shape, dtype=np.int64)) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, dtype, shape, chunks in entries:
            want = int(np.prod(shape, dtype=np.int64))
            got = 0
            for c in chunks():
                got += c.size
                f.write(to_bytes(c, dtype))
            if got != want:
                raise ValueError(f"{name}: produced {got} values for shape {list(shape)}")


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > 100 << 20:
            raise ValueError(f"{path}: header of {n} bytes")
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {})
    return header, meta, 8 + n


def read_chunks(path, info, start):
    """Yields the tensor's values as float32 arrays of at most CHUNK_ELEMS."""
    dtype = info["dtype"]
    size = ITEMSIZE[dtype]
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + begin)
        left = (end - begin) // size
        while left > 0:
            n = min(left, CHUNK_ELEMS)
            raw = f.read(n * size)
            if len(raw) != n * size:
                raise ValueError(f"{path}: truncated tensor data")
            if dtype == "F32":
                yield np.frombuffer(raw, dtype="<f4")
            elif dtype == "F16":
                yield np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif dtype == "BF16":
                bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                yield bits.view(np.float32)
            else:
                raise ValueError(f"{path}: unsupported dtype {dtype}")
            left -= n


def read_tensor(path, name):
    header, _, start = read_header(path)
    info = header[name]
    return np.concatenate(list(read_chunks(path, info, start))).reshape(info["shape"])
