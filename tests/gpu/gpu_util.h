/* Helpers of the GPU tests: a CPU and a CUDA backend side by side, buffers that live on
 * both, and comparisons by normalised MSE (mse(got, ref) / mse(ref, 0)) with NaN/inf
 * checks. Inputs are rounded to bf16 on the host first, so both backends see the very
 * same values and what differs is the GPU's arithmetic and bf16 outputs. */
#ifndef VDIT_GPU_UTIL_H
#define VDIT_GPU_UTIL_H

#include "backend.h"
#include "vdit.h"

/* The exit status meson counts as a skipped test. */
#define GPU_TEST_SKIP 77

typedef struct {
  vdit_backend cpu, gpu;
  GRand *rng;
} gpu_pair;

/* TRUE when a usable CUDA device is present; otherwise prints why the test skips. */
gboolean gpu_available (void);
void gpu_pair_init (gpu_pair *p, guint32 seed);
void gpu_pair_clear (gpu_pair *p);

/* Rounds to the nearest bf16 (even on ties), in place. */
void bf16_round (float *x, size_t n);
/* n uniform values in [lo, hi), bf16-exact. Free with g_free. */
float *host_uniform (GRand *rng, size_t n, double lo, double hi);

/* A buffer on both backends. */
typedef struct {
  void *cpu, *gpu;
  size_t n;
  VditElem elem;
} twin;

/* Uploads host (n values) to both; host NULL poisons the GPU copy with NaN and the CPU
 * copy with zeros, so unwritten GPU outputs show up as NaN. */
twin twin_new (gpu_pair *p, const float *host, size_t n, VditElem elem);
void twin_free (gpu_pair *p, twin *t);
/* Syncs both backends (asserting no error) and downloads both copies. */
void twin_fetch (gpu_pair *p, const twin *t, float **cpu, float **gpu);
/* Asserts that the GPU copy matches the CPU copy: same non-finite entries (−inf LSE of
 * empty rows), no other NaN/inf, and nmse ≤ tol over the finite ones. Returns the nmse. */
double twin_check (gpu_pair *p, const twin *t, double tol, const char *what);

/* A clip's frames as packed RGB rows, collected by gpu_clip_on_frame (vdit_gen_params'
 * on_frame with the clip as user_data). */
typedef struct {
  GByteArray *rgb;
  int frames;
} gpu_clip;
gboolean gpu_clip_on_frame (void *user_data, int index, int n_frames, const uint8_t *rgb,
                            int w, int h, int stride);
/* PSNR in dB of b's RGB bytes against a's (same length asserted); INFINITY when equal. */
double gpu_clip_psnr (const gpu_clip *a, const gpu_clip *b);

/* nmse of got against ref (finite entries); 0 when ref and got are both zero. */
double nmse (const float *ref, const float *got, size_t n);

#endif
