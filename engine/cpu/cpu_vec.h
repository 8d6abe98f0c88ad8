/* Float vectors of VW lanes (GCC/Clang vector extensions) and the helpers the CPU
 * kernels share: load, store, splat, select, lane sum and exp. Included once per
 * instruction set by a kernels header, after the includer defines VW and KNAME (the
 * name suffix); cpu_vec_end.h undoes the short names. Not a public header. */

typedef float KNAME (vf) __attribute__ ((vector_size (4 * VW)));
typedef int32_t KNAME (vi) __attribute__ ((vector_size (4 * VW)));
#define vf KNAME (vf)
#define vi KNAME (vi)
#define INLINE static inline __attribute__ ((always_inline))

INLINE vf
KNAME (vload) (const float *p)
{
  vf v;
  memcpy (&v, p, sizeof v);
  return v;
}

INLINE void
KNAME (vstore) (float *p, vf v)
{
  memcpy (p, &v, sizeof v);
}

INLINE vf
KNAME (vsplat) (float x)
{
  return (vf) { 0 } + x;
}

/* mask ? a : b, lane by lane (mask lanes all ones or all zeros) */
INLINE vf
KNAME (vselect) (vi mask, vf a, vf b)
{
  return (vf) (((vi) a & mask) | ((vi) b & ~mask));
}

INLINE float
KNAME (vsum) (vf v)
{
  float s = 0.0f;
  for (int c = 0; c < VW; c++)
    s += v[c];
  return s;
}

/* exp(x) lane by lane (Cephes' expf: Cody–Waite reduction, degree-6 polynomial; under
 * 2 ulp). Lanes below -87.3, -inf included, give exactly 0. */
INLINE vf
KNAME (vexp) (vf x)
{
  const vf magic = KNAME (vsplat) (12582912.0f); /* 1.5·2²³: adding it rounds to an integer */
  const vi dead = x < KNAME (vsplat) (-87.3f);
  x = KNAME (vselect) (x > KNAME (vsplat) (88.3f), KNAME (vsplat) (88.3f), x);
  x = KNAME (vselect) (dead, KNAME (vsplat) (0.0f), x);
  const vf t = x * 1.44269504088896341f + magic;
  const vf n = t - magic;
  const vf r = x - n * 0.693359375f - n * -2.12194440e-4f;
  vf p = KNAME (vsplat) (1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3333519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vi bits = ((vi) t - (vi) magic + 127) << 23;
  const vf y = p * (vf) bits;
  return (vf) ((vi) y & ~dead);
}
