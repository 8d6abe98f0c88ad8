/* Running out of memory, on the CPU: every allocation of a context's creation and of a
 * generation made to fail in turn (vdit_fault_alloc_fail_in) is an out-of-memory GError,
 * never a crash or a leak (the sanitizer build checks leaks), and the context generates
 * the same clip afterwards; a device too small for the request is refused before any
 * work, with the numbers (a CPU backend made to look like a device of 2 MiB); on such a
 * device with room the text encoder stays between generations. */
#include "ctx.h"
#include "model.h"
#include "test_util.h"

#include <string.h>

#include "st_writer.h" /* test_check_error */

static size_t
latent_values (vdit_model *model, int frames)
{
  const vdit_config *cfg = vdit_model_get_config (model);
  return (size_t) vdit_model_latent_frames (model, frames) * cfg->latent_height *
         cfg->latent_width * cfg->dit.in_channels;
}

/* Guided (two prompts) and with adaptive attention, so the policy's allocations count. */
static void
clip_params (vdit_gen_params *p)
{
  vdit_gen_params_init (p);
  p->prompt = "a red circle moving left";
  p->negative_prompt = "blurry";
  p->guidance = 4.0f;
  p->frames = 8;
  p->steps = 3;
  p->seed = 5;
  p->attention = VDIT_ATTENTION_ADAPTIVE;
}

static void
assert_oom (GError *error, const char *what, int k)
{
  if (error == NULL)
    g_error ("%s: allocation %d failed without an error", what, k);
  if (!g_error_matches (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY) ||
      strstr (error->message, "injected") == NULL || strstr (error->message, "free") == NULL)
    g_error ("%s: allocation %d failed with \"%s\" (domain %s, code %d)", what, k,
             error->message, g_quark_to_string (error->domain), error->code);
}

/* One generation of p (its clip in ref) counts its allocations; then each of them is made
 * to fail in turn (scratch takes the failed runs' output): every one reached and an
 * out-of-memory error; with live (the buffers held on a fake device), each failed run
 * leaves as many buffers held as the device had before it. */
static void
fail_each_allocation (vdit_ctx *ctx, const vdit_gen_params *p, float *ref, float *scratch,
                      const char *what, GHashTable *live)
{
  GError *error = NULL;
  vdit_fault_alloc_fail_in (G_MAXINT);
  g_assert_true (vdit_generate_latent (ctx, p, ref, &error));
  g_assert_no_error (error);
  const int allocs = G_MAXINT - vdit_fault_alloc_fail_in (0);
  g_test_message ("%s: %d allocations", what, allocs);
  g_assert_cmpint (allocs, >, 10);
  const guint held = live ? g_hash_table_size (live) : 0;
  for (int k = 1; k <= allocs; k++) {
    vdit_fault_alloc_fail_in (k);
    g_assert_false (vdit_generate_latent (ctx, p, scratch, &error));
    assert_oom (error, what, k);
    g_clear_error (&error);
    g_assert_cmpint (vdit_fault_alloc_fail_in (0), ==, 0); /* the k-th was reached */
    if (live && g_hash_table_size (live) != held)
      g_error ("%s: allocation %d failed: %u buffers on the device after it, %u before", what,
               k, g_hash_table_size (live), held);
  }
}

static void
test_every_allocation_of_a_generation (void)
{
  vdit_model *model;
  vdit_ctx *ctx;
  GError *error = NULL;
  test_load_tiny (&model, &ctx);
  vdit_gen_params p;
  clip_params (&p);
  const size_t n = latent_values (model, 8);
  g_autofree float *ref = g_new (float, n), *got = g_new (float, n);

  fail_each_allocation (ctx, &p, ref, got, "generation", NULL);
  /* nothing of the failed runs stays behind: the same clip again */
  g_assert_true (vdit_generate_latent (ctx, &p, got, &error));
  g_assert_no_error (error);
  g_assert_cmpint (memcmp (ref, got, n * sizeof (float)), ==, 0);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

static void
test_every_allocation_of_a_context (void)
{
  vdit_model *model;
  vdit_ctx *ctx;
  GError *error = NULL;
  test_load_tiny (&model, &ctx);
  vdit_ctx_free (ctx);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;

  vdit_fault_alloc_fail_in (G_MAXINT);
  ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  const int allocs = G_MAXINT - vdit_fault_alloc_fail_in (0);
  vdit_ctx_free (ctx);
  g_test_message ("a context (the weights' upload): %d allocations", allocs);
  g_assert_cmpint (allocs, >, 10);
  for (int k = 1; k <= allocs; k++) {
    vdit_fault_alloc_fail_in (k);
    g_assert_null (vdit_ctx_new (model, &cp, &error));
    assert_oom (error, "context", k);
    g_clear_error (&error);
  }
  vdit_fault_alloc_fail_in (0);
  vdit_model_free (model);
}

/* A CPU backend presented as a device of 2 MiB with 1 MiB free (mem_info, and host_alloc
 * to say its buffers are not host memory), counting what is allocated on it. */
static vdit_backend_i fake_iface;
static const vdit_backend_i *real_iface;
static int fake_allocs;

static size_t fake_available = 1 << 20, fake_total = 2 << 20;
static int fake_uploads;
static GHashTable *fake_live; /* the buffers allocated on it and not yet released */

static gboolean
fake_mem_info (void *ctx, size_t *available, size_t *total)
{
  *available = fake_available;
  *total = fake_total;
  return TRUE;
}

static gboolean
fake_upload (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  fake_uploads++;
  return real_iface->upload (ctx, dst, src, n, elem, error);
}

static void *
fake_alloc (void *ctx, size_t n, VditElem elem, GError **error)
{
  fake_allocs++;
  void *p = real_iface->alloc (ctx, n, elem, error);
  if (p)
    g_hash_table_add (fake_live, p);
  return p;
}

static void
fake_release (void *ctx, void *buf)
{
  g_hash_table_remove (fake_live, buf);
  real_iface->release (ctx, buf);
}

static void *
fake_host_alloc (void *ctx, size_t bytes, GError **error)
{
  return g_malloc (bytes);
}

static void
fake_host_free (void *ctx, void *p)
{
  g_free (p);
}

/* ctx's CPU backend presented as the fake device (fake_alloc and fake_upload count). */
static vdit_backend *
present_as_device (vdit_ctx *ctx)
{
  vdit_backend *be = vdit_ctx_get_backend (ctx);
  real_iface = be->iface;
  fake_iface = *be->iface;
  fake_iface.mem_info = fake_mem_info;
  fake_iface.alloc = fake_alloc;
  fake_iface.release = fake_release;
  fake_iface.upload = fake_upload;
  fake_iface.host_alloc = fake_host_alloc;
  fake_iface.host_free = fake_host_free;
  if (fake_live == NULL)
    fake_live = g_hash_table_new (g_direct_hash, g_direct_equal);
  be->iface = &fake_iface;
  return be;
}

/* The CPU backend as it was, and the fake device back to 2 MiB with 1 MiB free. */
static void
unpresent (vdit_backend *be)
{
  be->iface = real_iface;
  fake_available = 1 << 20;
  fake_total = 2 << 20;
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  (*(int *) user_data)++;
}

static void
test_device_too_small_refused_first (void)
{
  vdit_model *model;
  vdit_ctx *ctx;
  GError *error = NULL;
  test_load_tiny (&model, &ctx);
  vdit_backend *be = present_as_device (ctx);

  vdit_gen_params p;
  clip_params (&p);
  p.frames = 512; /* the tiny model's activations: several MiB */
  int reports = 0;
  p.progress = on_progress;
  p.user_data = &reports;
  g_assert_false (vdit_gen_params_check (ctx, &p, &error));
  test_check_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "512 frames", "MiB",
                    "1.0 MiB it can still allocate of 2.0 MiB", "fewer frames", NULL);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_assert_false (vdit_generate (ctx, &p, &error));
  test_check_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "512 frames", NULL);
  g_clear_error (&error);
  g_assert_cmpint (fake_allocs, ==, 0); /* refused before any work */
  g_assert_cmpint (reports, ==, 0);

  unpresent (be);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

/* One prompt's generation on the fake device, counting its uploads. */
static int
uploads_of (vdit_ctx *ctx, const char *prompt, float *latent)
{
  vdit_gen_params p;
  clip_params (&p);
  p.prompt = prompt;
  p.attention = VDIT_ATTENTION_FULL;
  GError *error = NULL;
  fake_uploads = 0;
  g_assert_true (vdit_generate_latent (ctx, &p, latent, &error));
  g_assert_no_error (error);
  return fake_uploads;
}

/* On a device with room, the text encoder stays after a generation and the next one
 * encodes with it (no upload of its weights, the same clip); without room beside the
 * clip it goes, and the one after uploads it again. A plain CPU context never keeps it. */
static void
test_text_encoder_kept_with_room (void)
{
  vdit_model *model;
  vdit_ctx *ctx, *plain;
  GError *error = NULL;
  test_load_tiny (&model, &ctx);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  plain = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  vdit_backend *be = present_as_device (ctx);
  const int te_uploads = 7 * vdit_model_get_config (model)->text.n_layers + 1;
  const size_t n = latent_values (model, 8);
  g_autofree float *got = g_new (float, n), *want = g_new (float, n);

  fake_available = (size_t) 64 << 30; /* plenty */
  fake_total = (size_t) 80 << 30;
  const int first = uploads_of (ctx, "a red circle moving left", got);
  const int kept = uploads_of (ctx, "a blue square moving up", got);
  g_assert_cmpint (first - kept, ==, te_uploads);
  vdit_gen_params p;
  clip_params (&p);
  p.prompt = "a blue square moving up";
  p.attention = VDIT_ATTENTION_FULL;
  g_assert_true (vdit_generate_latent (plain, &p, want, &error));
  g_assert_cmpmem (got, n * sizeof (float), want, n * sizeof (float));

  fake_available = (size_t) 1 << 30; /* enough for the clip, not with 5 % of 1 TiB spare */
  fake_total = (size_t) 1 << 40;
  g_assert_cmpint (uploads_of (ctx, "a green triangle moving right", got), ==, kept);
  g_assert_cmpint (uploads_of (ctx, "a red circle moving left", got), ==, first);

  unpresent (be);
  vdit_ctx_free (plain);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

/* A resident text encoder outlives a generation that fails: with every allocation of the
 * next generation made to fail in turn, the device holds the same buffers after each
 * failed run as before it, and the clip after them uploads none of the encoder's weights. */
static void
test_text_encoder_kept_through_failures (void)
{
  vdit_model *model;
  vdit_ctx *ctx;
  test_load_tiny (&model, &ctx);
  vdit_backend *be = present_as_device (ctx);
  g_autofree float *got = g_new (float, latent_values (model, 8));
  fake_available = (size_t) 64 << 30;
  fake_total = (size_t) 80 << 30;
  uploads_of (ctx, "a red circle moving left", got);
  const int kept = uploads_of (ctx, "a red circle moving left", got);

  vdit_gen_params p;
  clip_params (&p);
  fail_each_allocation (ctx, &p, got, got, "generation with a resident text encoder",
                        fake_live);
  g_assert_cmpint (uploads_of (ctx, "a red circle moving left", got), ==, kept);

  unpresent (be);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

static void
test_gpu_memory_without_gpu (void)
{
  vdit_gpu_memory m;
  if (vdit_cuda_available (NULL)) {
    g_test_skip ("a GPU is present (tests/gpu covers it)");
    return;
  }
  g_assert_false (vdit_gpu_memory_get (0, &m));
  vdit_cuda_set_alloc_limit (1); /* harmless without a CUDA backend */
  vdit_cuda_set_alloc_limit (0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/alloc-faults/generation", test_every_allocation_of_a_generation);
  g_test_add_func ("/alloc-faults/context", test_every_allocation_of_a_context);
  g_test_add_func ("/alloc-faults/device-too-small", test_device_too_small_refused_first);
  g_test_add_func ("/alloc-faults/text-encoder-kept", test_text_encoder_kept_with_room);
  g_test_add_func ("/alloc-faults/text-encoder-kept-through-failures",
                   test_text_encoder_kept_through_failures);
  g_test_add_func ("/alloc-faults/gpu-memory-without-gpu", test_gpu_memory_without_gpu);
  return g_test_run ();
}
