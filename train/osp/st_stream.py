"""safetensors files written and read one tensor (or one chunk) at a time, so an 11 GB
checkpoint never sits in memory: the header is computed from the shapes first, then each
tensor's bytes are appended as a producer yields them."""

import json
import os
import struct

import numpy as np

# bytes per element of every safetensors dtype (read_header checks spans with these;
# read_chunks converts only ITEMSIZE's)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8,
               "U64": 8}
ITEMSIZE = {d: DTYPE_BYTES[d] for d in ("F32", "F16", "BF16")}
MAX_HEADER = 100 << 20
CHUNK_ELEMS = 1 << 22  # 16 MB of f32 per read or write


def f32_to_bf16_bits(a):
    """float32 → bf16 bit patterns, round to nearest even (finite input)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError("bf16 conversion of a non-finite value")
    u = a.view(np.uint32)
    # in place and in 32 bits: a finite value's u + 0x8000 stays below 2^32
    rounded = (u >> 16) & np.uint32(1)
    rounded += np.uint32(0x7FFF)
    rounded += u
    rounded >>= 16
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


def show(v, limit=80):
    """v from a file, for a one-line message: JSON (newlines escaped), shortened."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError, RecursionError):
        text = type(v).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_entry(name, info, data_size):
    """A header entry as the format defines it, its bytes inside the data section."""
    where = f"tensor {show(name)}"
    if not isinstance(info, dict):
        raise ValueError(f"{where}: {show(info)} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise ValueError(f"{where}: dtype {show(dtype)} is not a safetensors dtype")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise ValueError(f"{where}: shape {show(shape)} is not a list of integers >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise ValueError(f"{where}: data_offsets {show(offsets)} is not [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise ValueError(f"{where}: data_offsets [{begin}, {end}] are not inside the "
                         f"{data_size} bytes of data")
    need = DTYPE_BYTES[dtype]  # the shape's bytes, stopping once past the span
    if 0 in shape:
        need = 0
    for d in shape:
        need *= d
        if need > end - begin:
            break
    if need != end - begin:
        raise ValueError(f"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes, "
                         f"not those of {dtype} {show(shape)}")


def read_header(path):
    """(tensors, metadata, start of the data) of a safetensors file. The header is checked
    against the format: a JSON object of at most MAX_HEADER bytes inside the file, whose
    entries have a known dtype, a shape of integers >= 0 and data_offsets [begin, end]
    inside the data section holding exactly the shape's bytes. ValueError (one line,
    without the path) otherwise; OSError when the file cannot be read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{len(prefix)} bytes: shorter than the header's length")
        n = struct.unpack("<Q", prefix)[0]
        if n > MAX_HEADER:
            raise ValueError(f"header of {n} bytes (at most {MAX_HEADER})")
        if n > size - 8:
            raise ValueError(f"header of {n} bytes in a file of {size}")
        text = f.read(n)
    try:
        header = json.loads(text)
    except RecursionError:
        raise ValueError("header nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict):
        raise ValueError(f"__metadata__ {show(meta)} is not an object")
    for name, info in header.items():
        _check_entry(name, info, size - 8 - n)
    return header, meta, 8 + n


def read_chunks(path, info, start):
    """Yields the tensor's values as float32 arrays of at most CHUNK_ELEMS."""
    dtype = info["dtype"]
    if dtype not in ITEMSIZE:
        raise ValueError(f"{path}: unsupported dtype {show(dtype)}")
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
            else:  # BF16
                bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                yield bits.view(np.float32)
            left -= n


def read_tensor(path, name):
    header, _, start = read_header(path)
    info = header[name]
    return np.concatenate(list(read_chunks(path, info, start))).reshape(info["shape"])
