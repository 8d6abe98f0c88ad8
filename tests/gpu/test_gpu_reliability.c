/* Long and concurrent use of one GPU, and running out of its memory (docs/reliability.md):
 * - contexts sharing one upload of the weights (vdit_ctx_new_shared) generate at once
 *   from two threads, each as it does alone, and sharing uploads nothing;
 * - clip after clip, what the process holds on the device comes back to the same bytes;
 * - every allocation of a generation made to fail in turn (vdit_fault_alloc_fail_in) and
 *   a byte limit (vdit_cuda_set_alloc_limit, VDIT_CUDA_ALLOC_LIMIT) are out-of-memory
 *   errors with the numbers, never a crash; nothing leaks on the device, and the context
 *   then gives the same clip;
 * - a request larger than the device is refused before any work, with the numbers.
 * Exits 77 (skipped) without a usable CUDA device. */
#include "ctx.h"
#include "gpu_util.h"
#include "model.h"
#include "test_util.h"

#include <glib/gstdio.h>
#include <string.h>

#define DEVICE 0
#define MAX_NMSE 1e-4 /* the same clip again on CUDA: the same kernels, or nearly */

static vdit_model *
load_tiny (void)
{
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *m = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  return m;
}

static vdit_ctx *
cuda_ctx (vdit_model *m)
{
  GError *error = NULL;
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CUDA;
  cp.device_id = DEVICE;
  vdit_ctx *ctx = vdit_ctx_new (m, &cp, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vdit_ctx_get_device_name (ctx), ==, "cuda");
  return ctx;
}

static guint64
held (void)
{
  vdit_gpu_memory mem;
  g_assert_true (vdit_gpu_memory_get (DEVICE, &mem));
  return mem.allocated;
}

static size_t
latent_values (vdit_model *m, int frames)
{
  const vdit_config *cfg = vdit_model_get_config (m);
  return (size_t) vdit_model_latent_frames (m, frames) * cfg->latent_height *
         cfg->latent_width * cfg->dit.in_channels;
}

typedef struct {
  vdit_ctx *ctx;
  vdit_gen_params p;
  float *latent;
  gboolean ok;
  GError *error;
} job;

static void
job_init (job *j, vdit_ctx *ctx, vdit_model *m, const char *prompt)
{
  memset (j, 0, sizeof *j);
  j->ctx = ctx;
  vdit_gen_params_init (&j->p);
  j->p.prompt = prompt;
  j->p.negative_prompt = "blurry";
  j->p.guidance = 4.0f;
  j->p.frames = 8;
  j->p.steps = 6;
  j->p.seed = 11;
  j->p.attention = VDIT_ATTENTION_ADAPTIVE;
  j->latent = g_new0 (float, latent_values (m, 8));
}

static gpointer
run_job (gpointer data)
{
  job *j = data;
  j->ok = vdit_generate_latent (j->ctx, &j->p, j->latent, &j->error);
  return NULL;
}

static void
assert_same_clip (const float *ref, const float *got, size_t n, const char *what)
{
  const double e = test_nmse (ref, got, n);
  g_test_message ("%s: nmse %.3g against the clip made alone", what, e);
  g_assert_cmpfloat (e, <=, MAX_NMSE);
}

static void
test_shared_weights_at_once (void)
{
  GError *error = NULL;
  vdit_model *m = load_tiny ();
  const guint64 before = held ();
  vdit_ctx *base = cuda_ctx (m);
  const guint64 with_base = held ();

  /* a shared context allocates its fixed buffers (stream scratch), no weights */
  vdit_fault_alloc_fail_in (G_MAXINT);
  vdit_ctx *a = vdit_ctx_new_shared (base, NULL, NULL, &error);
  g_assert_no_error (error);
  vdit_ctx *b = vdit_ctx_new_shared (base, NULL, NULL, &error);
  g_assert_no_error (error);
  const int allocs = G_MAXINT - vdit_fault_alloc_fail_in (0);
  const guint64 with_views = held ();
  g_test_message ("base: %" G_GUINT64_FORMAT " bytes on the device; two shared contexts: "
                  "%d allocations, %" G_GUINT64_FORMAT " bytes more", with_base - before,
                  allocs, with_views - with_base);
  g_assert_cmpint (allocs, ==, 4); /* two each: the cuBLASLt workspace, the staging buffer */
  g_assert_cmpstr (vdit_ctx_get_device_name (a), ==, "cuda");

  /* each alone, then both at once from two threads */
  const size_t n = latent_values (m, 8);
  job ref[2], both[2];
  job_init (&ref[0], a, m, "a red circle moving left");
  job_init (&ref[1], b, m, "a blue square moving up");
  run_job (&ref[0]);
  run_job (&ref[1]);
  g_assert_no_error (ref[0].error);
  g_assert_no_error (ref[1].error);
  GThread *threads[2];
  for (int i = 0; i < 2; i++) {
    job_init (&both[i], i ? b : a, m, ref[i].p.prompt);
    threads[i] = g_thread_new ("gen", run_job, &both[i]);
  }
  for (int i = 0; i < 2; i++) {
    g_thread_join (threads[i]);
    g_assert_no_error (both[i].error);
    g_assert_true (both[i].ok);
    assert_same_clip (ref[i].latent, both[i].latent, n, i ? "context b" : "context a");
    g_free (ref[i].latent);
    g_free (both[i].latent);
  }

  /* the views go first (the model cache's order); everything comes back */
  vdit_ctx_free (a);
  vdit_ctx_free (b);
  g_assert_cmpuint (held (), ==, with_base);
  vdit_ctx_free (base);
  g_assert_cmpuint (held (), ==, before);
  vdit_model_free (m);
}

/* Clip after clip on one context: the bytes held on the device after each are the same. */
static void
test_memory_flat_over_clips (void)
{
  vdit_model *m = load_tiny ();
  vdit_ctx *ctx = cuda_ctx (m);
  guint64 first = 0;
  for (int i = 1; i <= 20; i++) {
    job j;
    job_init (&j, ctx, m, "a red circle moving left");
    j.p.seed = i;
    run_job (&j);
    g_assert_no_error (j.error);
    g_free (j.latent);
    vdit_gpu_memory mem;
    g_assert_true (vdit_gpu_memory_get (DEVICE, &mem));
    if (i == 1)
      first = mem.allocated;
    if (i == 1 || i == 20)
      g_test_message ("clip %d: vdit holds %" G_GUINT64_FORMAT " bytes; the device has %"
                      G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " in use", i, mem.allocated,
                      mem.device_used, mem.device_total);
    g_assert_cmpuint (mem.allocated, ==, first);
  }
  vdit_ctx_free (ctx);
  vdit_model_free (m);
}

static void
assert_gpu_oom (const GError *error, const char *needle, int k)
{
  if (error == NULL)
    g_error ("allocation %d failed without an error", k);
  if (!g_error_matches (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY) ||
      strstr (error->message, "out of GPU memory") == NULL ||
      strstr (error->message, "free of") == NULL || strstr (error->message, needle) == NULL)
    g_error ("allocation %d failed with \"%s\" (domain %s, code %d)", k, error->message,
             g_quark_to_string (error->domain), error->code);
}

static void
test_every_allocation_fails_cleanly (void)
{
  vdit_model *m = load_tiny ();
  vdit_ctx *ctx = cuda_ctx (m);
  const size_t n = latent_values (m, 8);
  job ref;
  job_init (&ref, ctx, m, "a red circle moving left");
  run_job (&ref); /* also makes the GEMM plans, which later runs reuse */
  g_assert_no_error (ref.error);
  const guint64 idle = held ();

  vdit_fault_alloc_fail_in (G_MAXINT);
  job j;
  job_init (&j, ctx, m, ref.p.prompt);
  run_job (&j);
  g_assert_no_error (j.error);
  const int allocs = G_MAXINT - vdit_fault_alloc_fail_in (0);
  g_test_message ("one generation: %d device allocations", allocs);
  g_assert_cmpint (allocs, >, 10);

  int failed = 0;
  for (int k = 1; k <= allocs; k++) {
    vdit_fault_alloc_fail_in (k);
    run_job (&j);
    g_assert_cmpint (vdit_fault_alloc_fail_in (0), ==, 0);
    if (!j.ok) {
      assert_gpu_oom (j.error, "injected", k);
      if (k == 1)
        g_test_message ("allocation 1: %s", j.error->message);
      g_clear_error (&j.error);
      failed++;
    }
    /* nothing of a failed run stays on the device */
    g_assert_cmpuint (held (), ==, idle);
  }
  g_test_message ("%d of %d failed allocations failed the generation", failed, allocs);
  g_assert_cmpint (failed, ==, allocs);

  /* the byte limit: the generation's first allocation is over it */
  vdit_cuda_set_alloc_limit (idle + 1);
  run_job (&j);
  vdit_cuda_set_alloc_limit (0);
  g_assert_false (j.ok);
  assert_gpu_oom (j.error, "VDIT_CUDA_ALLOC_LIMIT", 0);
  g_test_message ("limit: %s", j.error->message);
  g_clear_error (&j.error);
  g_assert_cmpuint (held (), ==, idle);

  run_job (&j);
  g_assert_no_error (j.error);
  assert_same_clip (ref.latent, j.latent, n, "after the failures");
  g_free (ref.latent);
  g_free (j.latent);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
}

/* Open-Sora-Plan v1.2's width (hidden 2304, FFN 9216, 24 heads of 96, 3,600 tokens a
 * frame) in one block with a small text encoder: little to load, and 4,096 frames need
 * some 700 GiB of activations on the device but about 10 GiB of host memory. */
static const char wide_config[] =
  "{\"format\": \"vdit\", \"version\": 1, \"name\": \"wide-one-block\","
  " \"video\": {\"frames\": 8, \"height\": 90, \"width\": 160, \"fps\": 24.0},"
  " \"decoder\": {\"type\": \"identity\", \"channels\": 3},"
  " \"text_encoder\": {\"vocab_size\": 1000, \"d_model\": 64, \"n_layers\": 1,"
  "  \"n_heads\": 4, \"d_kv\": 16, \"d_ff\": 128, \"rel_buckets\": 32,"
  "  \"rel_max_distance\": 128, \"max_tokens\": 32, \"eps\": 1e-6},"
  " \"dit\": {\"hidden\": 2304, \"depth\": 1, \"heads\": 24, \"head_dim\": 96,"
  "  \"patch\": [1, 2, 2], \"in_channels\": 3, \"ffn_hidden\": 9216, \"freq_dim\": 256,"
  "  \"rope_theta\": 10000.0, \"rope_scale\": [1.0, 1.5, 2.0], \"eps\": 1e-6},"
  " \"sampler\": {\"type\": \"euler_ancestral\", \"prediction\": \"epsilon\", \"steps\": 2,"
  "  \"guidance\": 1.0, \"shift\": 1.0, \"train_timesteps\": 1000, \"beta_start\": 0.0001,"
  "  \"beta_end\": 0.02, \"beta_schedule\": \"linear\"},"
  " \"attention\": {\"mode\": \"full\", \"tile_k\": 1, \"block\": 64, \"sparsity\": 0.8,"
  "  \"warmup\": 0.2, \"search_steps\": [0.2, 0.6]}}";

static void
test_too_large_refused_first (void)
{
  GError *error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("vdit-wide-XXXXXX", &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "wide.json", NULL);
  g_assert_true (g_file_set_contents (path, wide_config, -1, &error));
  vdit_model *m = vdit_model_load (path, &error);
  g_assert_no_error (error);
  vdit_ctx *ctx = cuda_ctx (m);
  const guint64 idle = held ();

  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a red circle";
  p.frames = 4096;
  g_assert_false (vdit_gen_params_check (ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "4096 frames"));
  g_assert_nonnull (strstr (error->message, "on the cuda device"));
  g_assert_nonnull (strstr (error->message, "GiB it can still allocate of"));
  g_clear_error (&error);

  vdit_fault_alloc_fail_in (G_MAXINT);
  const gint64 t0 = g_get_monotonic_time ();
  g_assert_false (vdit_generate (ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY);
  g_clear_error (&error);
  g_assert_cmpint (vdit_fault_alloc_fail_in (0), ==, G_MAXINT); /* nothing allocated */
  g_assert_cmpint (g_get_monotonic_time () - t0, <, G_USEC_PER_SEC);
  g_assert_cmpuint (held (), ==, idle);

  vdit_ctx_free (ctx);
  vdit_model_free (m);
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/reliability/shared-weights", test_shared_weights_at_once);
  g_test_add_func ("/gpu/reliability/memory-flat", test_memory_flat_over_clips);
  g_test_add_func ("/gpu/reliability/out-of-memory", test_every_allocation_fails_cleanly);
  g_test_add_func ("/gpu/reliability/too-large", test_too_large_refused_first);
  return g_test_run ();
}
