"""Counter-based standard normals: Philox4x32-10 + Box–Muller (docs/model-format.md, Noise).

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; the Random123 reference).  State: a 128-bit counter (c0, c1, c2, c3) and a 64-bit
key (k0, k1), all 32-bit words.  One round:
    p0 = 0xD2511F53 · c0,  p1 = 0xCD9E8D57 · c2          (full 64-bit products)
    (c0, c1, c2, c3) ← (hi(p1) ^ c1 ^ k0,  lo(p1),  hi(p0) ^ c3 ^ k1,  lo(p0))
and after each round the key is bumped by the Weyl constants
    k0 += 0x9E3779B9,  k1 += 0xBB67AE85   (mod 2³²).
Ten rounds; the output is the final counter words (r0, r1, r2, r3).

vdit's stream layout: normal number i of stream s under seed S uses
    key = (S & 0xffffffff, S >> 32),  counter = (lo32(i // 4), hi32(i // 4), s, 0);
the uniforms u_j = (r_j + 0.5) / 2³² (in double, exact) give two Box–Muller pairs
    (u0, u1) → sqrt(−2 ln u0) · (cos 2π·u1, sin 2π·u1),   (u2, u3) likewise,
computed in double; number i is value i % 4 of (z0, z1, z2, z3), rounded to float32.

All arithmetic is numpy uint64 on 32-bit values, so products are exact and vectorised.
The transcendental functions come from Python's math module (the C library's libm, as in
the engine) so that results match the C side bit for bit.
"""

import math

import numpy as np

M0 = np.uint64(0xD2511F53)
M1 = np.uint64(0xCD9E8D57)
W0 = np.uint64(0x9E3779B9)
W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
ROUNDS = 10


def philox4x32_10(counter, key):
    """counter: four arrays (or ints) of 32-bit words; key: two 32-bit ints.
    Returns the four output words as uint64 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & MASK32 for c in counter)
    k0, k1 = np.uint64(int(key[0]) & 0xFFFFFFFF), np.uint64(int(key[1]) & 0xFFFFFFFF)
    for _ in range(ROUNDS):
        p0 = M0 * c0  # < 2⁶⁴: exact
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> SHIFT32) ^ c1 ^ k0, p1 & MASK32,
                          (p0 >> SHIFT32) ^ c3 ^ k1, p0 & MASK32)
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


_log = np.frompyfunc(math.log, 1, 1)
_cos = np.frompyfunc(math.cos, 1, 1)
_sin = np.frompyfunc(math.sin, 1, 1)
_sqrt = np.frompyfunc(math.sqrt, 1, 1)
TWO_PI = 2.0 * math.pi


def _box_muller(ua, ub):
    radius = _sqrt(-2.0 * _log(ua).astype(np.float64)).astype(np.float64)
    angle = TWO_PI * ub
    return radius * _cos(angle).astype(np.float64), radius * _sin(angle).astype(np.float64)


def normals(seed, stream, n, first=0):
    """float32 array of normal numbers first .. first + n − 1 of `stream` under `seed`."""
    seed = int(seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError("seed must be an unsigned 64-bit integer")
    if not 0 <= int(stream) < 2 ** 32:
        raise ValueError("stream must be an unsigned 32-bit integer")
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    b0 = first // 4
    b1 = (first + n - 1) // 4
    blocks = np.arange(b0, b1 + 1, dtype=np.uint64)
    zeros = np.zeros_like(blocks)
    counter = (blocks & MASK32, blocks >> SHIFT32, zeros + np.uint64(stream), zeros)
    r = philox4x32_10(counter, (seed & 0xFFFFFFFF, seed >> 32))
    u = [(w.astype(np.float64) + 0.5) / 4294967296.0 for w in r]
    z0, z1 = _box_muller(u[0], u[1])
    z2, z3 = _box_muller(u[2], u[3])
    z = np.stack([z0, z1, z2, z3], axis=1).reshape(-1)
    start = first - 4 * b0
    return z[start:start + n].astype(np.float32)


def normals_like(shape, seed, stream):
    """A float32 array of `shape` whose row-major element i is normal number i."""
    n = int(np.prod(shape, dtype=np.int64))
    return normals(seed, stream, n).reshape(shape)
