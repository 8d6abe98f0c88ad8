/* CausalVideoVAE layers: convolutions as im2col + OpenBLAS GEMM over bands of output
 * rows (so the column buffer stays bounded), the rest plain loops. */
#include "vae_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>


void
vdit_vae_conv3d (float *out, const float *in, const vdit_vae_conv *c, int T, int H, int W)
{
  const int K = c->cin * c->kt * c->kh * c->kw;
  const int ph = c->kh / 2, pw = c->kw / 2;
  const size_t plane = (size_t) H * W, frame_stride = (size_t) T * plane;
  int rows = (int) MAX (1, MIN ((size_t) H, COL_BUDGET_FLOATS / ((size_t) K * W)));
  float *col = g_new (float, (size_t) K * rows * W);
  for (int t = 0; t < T; t++) {
    for (int y0 = 0; y0 < H; y0 += rows) {
      const int ny = MIN (rows, H - y0), n = ny * W;
      int k = 0;
      for (int ci = 0; ci < c->cin; ci++)
        for (int dt = 0; dt < c->kt; dt++) {
          const int ti = MAX (0, t + dt - (c->kt - 1)); /* causal: frame 0 repeated */
          const float *src = in + ci * frame_stride + ti * plane;
          for (int dy = 0; dy < c->kh; dy++)
            for (int dx = 0; dx < c->kw; dx++, k++) {
              float *dst = col + (size_t) k * n;
              for (int y = 0; y < ny; y++) {
                const int yi = y0 + y + dy - ph;
                for (int x = 0; x < W; x++) {
                  const int xi = x + dx - pw;
                  dst[y * W + x] = (yi >= 0 && yi < H && xi >= 0 && xi < W)
                                     ? src[(size_t) yi * W + xi] : 0.0f;
                }
              }
            }
        }
      float *dst = out + t * plane + (size_t) y0 * W;
      for (int co = 0; co < c->cout; co++)
        for (int i = 0; i < n; i++)
          dst[co * frame_stride + i] = c->b[co];
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, n, K, 1.0f, c->w, K, col,
                   n, 1.0f, dst, (int) frame_stride);
    }
  }
  g_free (col);
}

void
vdit_vae_group_norm (float *x, const vdit_vae_norm *nm, size_t per_channel, gboolean silu)
{
  const int groups = 32, cg = nm->c / groups;
  for (int g = 0; g < groups; g++) {
    float *xs = x + (size_t) g * cg * per_channel;
    const size_t n = (size_t) cg * per_channel;
    double sum = 0.0, sq = 0.0;
    for (size_t i = 0; i < n; i++)
      sum += xs[i];
    const double mean = sum / n;
    for (size_t i = 0; i < n; i++)
      sq += (xs[i] - mean) * (xs[i] - mean);
    const float inv = (float) (1.0 / sqrt (sq / n + 1e-6)), fm = (float) mean;
    for (int c = 0; c < cg; c++) {
      const float ga = nm->gamma[g * cg + c], be = nm->beta[g * cg + c];
      float *row = xs + (size_t) c * per_channel;
      for (size_t i = 0; i < per_channel; i++) {
        float v = (row[i] - fm) * inv * ga + be;
        row[i] = silu ? v / (1.0f + expf (-v)) : v;
      }
    }
  }
}

void
vdit_vae_upsample_nearest2x (float *out, const float *in, int C, int T, int H, int W)
{
  const size_t n_in = (size_t) H * W, n_out = 4 * n_in;
  for (size_t ct = 0; ct < (size_t) C * T; ct++)
    for (int y = 0; y < 2 * H; y++)
      for (int x = 0; x < 2 * W; x++)
        out[ct * n_out + (size_t) y * 2 * W + x] = in[ct * n_in + (size_t) (y / 2) * W + x / 2];
}

/* align_corners false, doubling: source (d + 0.5)/2 − 0.5, clamped at 0 (PyTorch's
 * area_pixel_compute_source_index), neighbours i0 and min(i0 + 1, n − 1). */
static void
linear_taps (int d, int n, int *i0, int *i1, float *frac)
{
  float src = (d + 0.5f) * 0.5f - 0.5f;
  if (src < 0.0f)
    src = 0.0f;
  *i0 = (int) src;
  *i1 = *i0 + (*i0 < n - 1 ? 1 : 0);
  *frac = src - (float) *i0;
}

/* Bilinear ×2 of one (H, W) plane. */
static void
bilinear2x (float *out, const float *in, int H, int W)
{
  for (int y = 0; y < 2 * H; y++) {
    int y0, y1;
    float ly;
    linear_taps (y, H, &y0, &y1, &ly);
    for (int x = 0; x < 2 * W; x++) {
      int x0, x1;
      float lx;
      linear_taps (x, W, &x0, &x1, &lx);
      const float top = (1.0f - lx) * in[y0 * W + x0] + lx * in[y0 * W + x1];
      const float bot = (1.0f - lx) * in[y1 * W + x0] + lx * in[y1 * W + x1];
      out[y * 2 * W + x] = (1.0f - ly) * top + ly * bot;
    }
  }
}

void
vdit_vae_upsample_s2t2 (float *out, const float *in, int C, int T, int H, int W)
{
  const int R = T - 1, T2 = 1 + 2 * R;
  const size_t plane = (size_t) H * W, plane2 = 4 * plane;
  float *mixed = g_new (float, plane);
  for (int c = 0; c < C; c++) {
    const float *src = in + (size_t) c * T * plane;
    float *dst = out + (size_t) c * T2 * plane2;
    bilinear2x (dst, src, H, W); /* frame 0: ×(1, 2, 2) */
    for (int d = 0; d < 2 * R; d++) { /* frames 1..T−1 among themselves: ×2 in time */
      int t0, t1;
      float lt;
      linear_taps (d, R, &t0, &t1, &lt);
      const float *a = src + (size_t) (1 + t0) * plane, *b = src + (size_t) (1 + t1) * plane;
      for (size_t i = 0; i < plane; i++)
        mixed[i] = (1.0f - lt) * a[i] + lt * b[i];
      bilinear2x (dst + (size_t) (1 + d) * plane2, mixed, H, W);
    }
  }
  g_free (mixed);
}

void
vdit_vae_frame_attention (float *out, const float *q, const float *k, const float *v, int C,
                          int T, int HW)
{
  const int ld = T * HW;
  float *s = g_new (float, (size_t) HW * HW);
  const float scale = 1.0f / sqrtf ((float) C);
  for (int t = 0; t < T; t++) {
    const size_t off = (size_t) t * HW;
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, HW, HW, C, scale, q + off, ld, k + off,
                 ld, 0.0f, s, HW);
    for (int i = 0; i < HW; i++) {
      float *row = s + (size_t) i * HW, m = -INFINITY;
      for (int j = 0; j < HW; j++)
        m = fmaxf (m, row[j]);
      double sum = 0.0;
      for (int j = 0; j < HW; j++)
        sum += (row[j] = expf (row[j] - m));
      const float inv = (float) (1.0 / sum);
      for (int j = 0; j < HW; j++)
        row[j] *= inv;
    }
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, C, HW, HW, 1.0f, v + off, ld, s, HW,
                 0.0f, out + off, ld);
  }
  g_free (s);
}

/* The index of VAR's value in names (n of them), dflt when unset; a warning when unknown. */
static guint
env_choice (const char *var, const char *const *names, guint n, guint dflt)
{
  const char *env = g_getenv (var);
  if (env == NULL || *env == '\0')
    return dflt;
  for (guint i = 0; i < n; i++)
    if (g_str_equal (env, names[i]))
      return i;
  GString *all = g_string_new (names[0]);
  for (guint i = 1; i < n; i++)
    g_string_append_printf (all, ", %s", names[i]);
  g_warning ("%s=%s is not one of %s: %s used", var, env, all->str, names[dflt]);
  g_string_free (all, TRUE);
  return dflt;
}

/* indexed by VditVaePrecision */
static const char *const precision_names[] = { "f32", "tf32", "bf16" };

VditVaePrecision
vdit_vae_gpu_precision (void)
{
  static gsize once = 0;
  static VditVaePrecision p;
  if (g_once_init_enter (&once)) {
    p = (VditVaePrecision) env_choice ("VDIT_CUDA_VAE_PRECISION", precision_names,
                                       G_N_ELEMENTS (precision_names), VDIT_VAE_BF16);
    g_once_init_leave (&once, 1);
  }
  return p;
}

const char *
vdit_vae_precision_name (VditVaePrecision p)
{
  return precision_names[p];
}

/* indexed by VditVaeConvMethod */
static const char *const conv_names[] = { "cudnn", "cudnn-ncdhw", "gemm" };

VditVaeConvMethod
vdit_vae_gpu_conv (void)
{
  static gsize once = 0;
  static VditVaeConvMethod m;
  if (g_once_init_enter (&once)) {
    m = (VditVaeConvMethod) env_choice ("VDIT_CUDA_VAE_CONV", conv_names,
                                        G_N_ELEMENTS (conv_names), VDIT_VAE_CONV_CUDNN);
    g_once_init_leave (&once, 1);
  }
  return m;
}

const char *
vdit_vae_conv_name (VditVaeConvMethod m)
{
  return conv_names[m];
}
