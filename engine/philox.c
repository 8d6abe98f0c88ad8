/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"). */
#include "philox.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void
philox4x32_10 (uint32_t out[4], const uint32_t ctr_in[4], const uint32_t key_in[2])
{
  uint32_t c[4] = { ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3] };
  uint32_t k[2] = { key_in[0], key_in[1] };
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t) PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t) PHILOX_M1 * c[2];
    uint32_t n0 = (uint32_t) (p1 >> 32) ^ c[1] ^ k[0];
    uint32_t n1 = (uint32_t) p1;
    uint32_t n2 = (uint32_t) (p0 >> 32) ^ c[3] ^ k[1];
    uint32_t n3 = (uint32_t) p0;
    c[0] = n0;
    c[1] = n1;
    c[2] = n2;
    c[3] = n3;
    k[0] += PHILOX_W0;
    k[1] += PHILOX_W1;
  }
  for (int i = 0; i < 4; i++)
    out[i] = c[i];
}

/* The four normals of counter block b. */
static void
philox_block_normals (double z[4], uint64_t seed, uint32_t stream, uint64_t b)
{
  const uint32_t key[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
  const uint32_t ctr[4] = { (uint32_t) b, (uint32_t) (b >> 32), stream, 0 };
  uint32_t r[4];
  philox4x32_10 (r, ctr, key);
  for (int pair = 0; pair < 2; pair++) {
    double u0 = ((double) r[2 * pair] + 0.5) / 4294967296.0;
    double u1 = ((double) r[2 * pair + 1] + 0.5) / 4294967296.0;
    double radius = sqrt (-2.0 * log (u0));
    z[2 * pair] = radius * cos (2.0 * M_PI * u1);
    z[2 * pair + 1] = radius * sin (2.0 * M_PI * u1);
  }
}

void
vdit_philox_normal (float *dst, size_t n, uint64_t seed, uint32_t stream, uint64_t first)
{
  size_t j = 0;
  while (j < n) {
    uint64_t i = first + j;
    double z[4];
    philox_block_normals (z, seed, stream, i / 4);
    for (unsigned lane = (unsigned) (i % 4); lane < 4 && j < n; lane++, j++)
      dst[j] = (float) z[lane];
  }
}
