/* Shared helpers of the engine tests. */
#ifndef VDIT_TEST_UTIL_H
#define VDIT_TEST_UTIL_H

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

#endif
