/* CPU reference: timestep embedding and decoding to 8-bit RGB (see cpu_frames.h). */
#include "cpu_frames.h"

#include "decoder.h"

#include <math.h>

void
cpu_timestep_embedding (void *ctx, void *out_, const float *timesteps, int n, int freq_dim)
{
  float *out = out_;
  const int half = freq_dim / 2;
  for (int r = 0; r < n; r++) {
    float *emb = out + (size_t) r * freq_dim;
    /* in double, rounded once: the same numbers on every backend and in PyTorch */
    for (int i = 0; i < half; i++) {
      double a = (double) timesteps[r] * exp (-log (10000.0) * i / half);
      emb[i] = (float) cos (a);
      emb[half + i] = (float) sin (a);
    }
  }
}

void
cpu_decode_rgb (void *ctx, uint8_t *rgb, const void *src_, VditElem elem, int frame0,
                int frames, int height, int width, const int patch[3])
{
  const float *src = src_; /* ACT is f32 on this backend */
  const int pt = patch[0], ph = patch[1], pw = patch[2];
  const int gh = height / ph, gw = width / pw;
  const size_t per = (size_t) pt * ph * pw * 3;
  size_t o = 0;
  for (int f = 0; f < frames; f++) {
    const int t = frame0 + f;
    for (int y = 0; y < height; y++)
      for (int x = 0; x < width; x++) {
        const size_t token = ((size_t) (t / pt) * gh + y / ph) * gw + x / pw;
        const float *v = src + token * per + (size_t) (((t % pt) * ph + y % ph) * pw + x % pw) * 3;
        for (int ch = 0; ch < 3; ch++)
          rgb[o++] = vdit_rgb_byte (v[ch]);
      }
  }
}
