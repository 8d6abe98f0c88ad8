/* Shared helpers of the engine tests. */
#ifndef VDIT_TEST_UTIL_H
#define VDIT_TEST_UTIL_H

#include "backend.h"
#include "safetensors.h"
#include "vdit.h"

/* $VDIT_SOURCE_ROOT/relative (the source tree; meson sets it). Caller frees. */
char *test_source_path (const char *relative);
/* Loads models/tiny and a CPU context on it; fails the test on any error. */
void test_load_tiny (vdit_model **model, vdit_ctx **ctx);
/* Normalised MSE: mse(a, b) / mse(a, 0); 0 when both are zero. */
double test_nmse (const float *ref, const float *got, size_t n);
double test_max_abs_diff (const float *a, const float *b, size_t n);
/* A golden tensor as a new f32 array; fails the test if absent. */
float *test_golden_f32 (const vdit_safetensors *st, const char *name, size_t *n);
/* Asserts got ≈ ref: max |diff| ≤ atol + rtol·|ref| elementwise, reporting the worst. */
void test_assert_close (const char *what, const float *ref, const float *got, size_t n,
                        double atol, double rtol);

/* A one-token caption (one key: dit.h's shortcut) against the same token twice (two
 * equal keys: the attention path, each weighted ½) in one DiT forward of model on be:
 * asserts nmse ≤ tol, and that another token gives another output. */
void test_dit_one_key (vdit_backend *be, const vdit_model *model, double tol);

/* A block layout with its own row and column arrays. */
typedef struct {
  vdit_block_layout l;
  int32_t *row_ptr, *cols;
} test_layout;
/* Each query block keeps each key block with probability keep, except query block 1,
 * which keeps nothing: its rows must come out zero with LSE −inf. */
void test_random_layout (test_layout *t, GRand *rng, int block_q, int block_k, int n_q,
                         int n_k, int n_heads, double keep);

#endif
