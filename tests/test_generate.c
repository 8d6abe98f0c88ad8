/* vdit_generate through the public API on models/tiny: frame counts, determinism,
 * progress, cancellation from another thread, and one error per bad parameter. */
#include "test_util.h"
#include "vdit.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

typedef struct {
  vdit_model *model;
  vdit_ctx *ctx;
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  test_load_tiny (&f->model, &f->ctx);
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  vdit_ctx_free (f->ctx);
  vdit_model_free (f->model);
}

typedef struct {
  GChecksum *sum;
  int frames;
  int last_step;
  gboolean steps_monotonic;
  int stop_after; /* frame callback returns FALSE after this many frames; -1 never */
  vdit_ctx *cancel_ctx;
  gboolean cancel_on_first_step;
} sink;

static gboolean
on_frame (void *user_data, int index, int n_frames, const uint8_t *rgb, int w, int h, int stride)
{
  sink *s = user_data;
  g_assert_cmpint (index, ==, s->frames);
  for (int y = 0; y < h; y++)
    g_checksum_update (s->sum, rgb + (size_t) y * stride, (gssize) w * 3);
  s->frames++;
  return s->stop_after < 0 || s->frames < s->stop_after;
}

static void
on_progress (void *user_data, VditStage stage, int step, int steps)
{
  sink *s = user_data;
  if (stage != VDIT_STAGE_DENOISE)
    return;
  if (step <= s->last_step || step > steps)
    s->steps_monotonic = FALSE;
  s->last_step = step;
  if (s->cancel_on_first_step && step == 1)
    vdit_cancel (s->cancel_ctx);
}

static gboolean
run (fixture *f, vdit_gen_params *p, sink *s, char **digest, GError **error)
{
  memset (s, 0, sizeof *s);
  s->sum = g_checksum_new (G_CHECKSUM_SHA256);
  s->steps_monotonic = TRUE;
  s->stop_after = -1;
  p->on_frame = on_frame;
  p->progress = on_progress;
  p->user_data = s;
  gboolean ok = vdit_generate (f->ctx, p, error);
  if (digest)
    *digest = g_strdup (g_checksum_get_string (s->sum));
  g_checksum_free (s->sum);
  return ok;
}

static void
params (vdit_gen_params *p, const char *prompt, uint64_t seed)
{
  vdit_gen_params_init (p);
  p->prompt = prompt;
  p->seed = seed;
  p->steps = 3;
}

static void
test_frames_and_determinism (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  sink s;
  g_autofree char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  params (&p, "a red circle moving left", 7);
  p.frames = 4;
  g_assert_true (run (f, &p, &s, &a, &error));
  g_assert_no_error (error);
  g_assert_cmpint (s.frames, ==, 4);
  g_assert_true (s.steps_monotonic);
  g_assert_cmpint (s.last_step, ==, 3);
  g_assert_true (run (f, &p, &s, &b, &error));
  g_assert_cmpstr (a, ==, b);
  p.seed = 8;
  g_assert_true (run (f, &p, &s, &c, &error));
  g_assert_cmpstr (a, !=, c);
  p.seed = 7;
  p.prompt = "a blue square moving up";
  g_assert_true (run (f, &p, &s, &d, &error));
  g_assert_cmpstr (a, !=, d);
  /* the model's default frame count */
  p.frames = 0;
  g_assert_true (run (f, &p, &s, NULL, &error));
  g_assert_cmpint (s.frames, ==, vdit_model_get_info (f->model)->frames);
}

static gpointer
cancel_later (gpointer data)
{
  g_usleep (50 * 1000);
  vdit_cancel (data);
  return NULL;
}

static void
test_cancel (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  sink s;
  params (&p, "a red circle moving left", 1);
  p.steps = 5000; /* minutes of work unless cancelled */
  GThread *t = g_thread_new ("cancel", cancel_later, f->ctx);
  gint64 t0 = g_get_monotonic_time ();
  g_assert_false (run (f, &p, &s, NULL, &error));
  g_thread_join (t);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 5 * G_USEC_PER_SEC);
  g_assert_cmpint (s.frames, ==, 0);

  /* still cancelled until reset */
  p.steps = 2;
  g_assert_false (run (f, &p, &s, NULL, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_clear_error (&error);
  vdit_reset_cancel (f->ctx);
  g_assert_true (run (f, &p, &s, NULL, &error));
  g_assert_no_error (error);
}

static void
test_frame_callback_stops (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  sink s;
  params (&p, "a red circle moving left", 1);
  memset (&s, 0, sizeof s);
  s.sum = g_checksum_new (G_CHECKSUM_SHA256);
  s.stop_after = 2;
  s.last_step = 0;
  p.on_frame = on_frame;
  p.user_data = &s;
  g_assert_false (vdit_generate (f->ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_assert_cmpint (s.frames, ==, 2);
  g_clear_error (&error);
  g_checksum_free (s.sum);
}

typedef struct {
  const char *name;
  const char *prompt;
  int frames, steps;
  float guidance, sparsity;
  VditAttention attention;
  const char *message_part;
} bad_case;

static const bad_case bad_cases[] = {
  { "empty-prompt", "", 0, 0, -1, -1, VDIT_ATTENTION_DEFAULT, "prompt is empty" },
  { "null-prompt", NULL, 0, 0, -1, -1, VDIT_ATTENTION_DEFAULT, "prompt is empty" },
  { "invalid-utf8", "caf\xe9", 0, 0, -1, -1, VDIT_ATTENTION_DEFAULT, "UTF-8" },
  { "frames-odd", "a red circle", 3, 0, -1, -1, VDIT_ATTENTION_DEFAULT, "frames = 3" },
  { "frames-huge", "a red circle", 1 << 20, 0, -1, -1, VDIT_ATTENTION_DEFAULT, "frames = 1048576" },
  { "frames-negative", "a red circle", -2, 0, -1, -1, VDIT_ATTENTION_DEFAULT, "frames = -2" },
  { "steps-negative", "a red circle", 0, -1, -1, -1, VDIT_ATTENTION_DEFAULT, "steps = -1" },
  { "steps-huge", "a red circle", 0, 20000, -1, -1, VDIT_ATTENTION_DEFAULT, "steps = 20000" },
  { "guidance-nan", "a red circle", 0, 0, NAN, -1, VDIT_ATTENTION_DEFAULT, "guidance" },
  { "guidance-huge", "a red circle", 0, 0, 1000, -1, VDIT_ATTENTION_DEFAULT, "guidance = 1000" },
  { "sparsity-one", "a red circle", 0, 0, -1, 1.0f, VDIT_ATTENTION_ADAPTIVE, "sparsity = 1" },
  { "attention-unknown", "a red circle", 0, 0, -1, -1, (VditAttention) 7, "attention" },
};

static void
test_bad_params (fixture *f, gconstpointer data)
{
  const bad_case *c = data;
  GError *error = NULL;
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = c->prompt;
  p.frames = c->frames;
  p.steps = c->steps;
  p.guidance = c->guidance;
  p.sparsity = c->sparsity;
  p.attention = c->attention;
  g_assert_false (vdit_generate (f->ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  if (!strstr (error->message, c->message_part))
    g_error ("message \"%s\" does not mention \"%s\"", error->message, c->message_part);
  g_clear_error (&error);
}

static void
test_missing_model (void)
{
  GError *error = NULL;
  g_assert_null (vdit_model_load ("/nonexistent/model", &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "/nonexistent/model"));
  g_clear_error (&error);
}

static void
test_cuda_without_gpu (void)
{
  if (vdit_cuda_available (NULL)) {
    g_test_skip ("a GPU is present");
    return;
  }
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *m = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CUDA;
  g_assert_null (vdit_ctx_new (m, &cp, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE);
  g_clear_error (&error);
  cp.device = VDIT_DEVICE_AUTO;
  cp.gpus = 2;
  g_assert_null (vdit_ctx_new (m, &cp, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE);
  g_clear_error (&error);
  vdit_model_free (m);
}

/* The device request is checked before anything loads, on any machine: more GPUs than
 * present (even where device_id + gpus overflows an int) and gpus > 1 on the CPU. */
static void
test_device_request (void)
{
  GError *error = NULL;
  int cuda_device = 7;
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  g_assert_true (vdit_ctx_params_check (&cp, &cuda_device, &error));
  g_assert_no_error (error);
  g_assert_cmpint (cuda_device, ==, -1);
  cp.gpus = 2;
  g_assert_false (vdit_ctx_params_check (&cp, NULL, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE);
  g_clear_error (&error);
  cp.gpus = 0;
  g_assert_false (vdit_ctx_params_check (&cp, NULL, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  cp.device = VDIT_DEVICE_CUDA;
  cp.device_id = G_MAXINT;
  cp.gpus = 2;
  g_assert_false (vdit_ctx_params_check (&cp, NULL, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE);
  g_clear_error (&error);
}

static void
test_random_model (void)
{
  GError *error = NULL;
  g_autofree char *cfg = test_source_path ("models/tiny/config.json");
  vdit_model *m = vdit_model_new_random (cfg, 3, &error);
  g_assert_no_error (error);
  vdit_ctx *ctx = vdit_ctx_new (m, NULL, &error);
  g_assert_no_error (error);
  vdit_gen_params p;
  params (&p, "random weights", 1);
  g_assert_true (vdit_generate (ctx, &p, &error));
  g_assert_no_error (error);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
}

/* Without a tokenizer bytes become ids 3..vocab_size−1: a smaller vocabulary is an
 * error, not a division by zero. */
static void
test_random_model_tiny_vocab (void)
{
  GError *error = NULL;
  g_autofree char *src = test_source_path ("models/tiny/config.json");
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (src, &text, NULL, NULL));
  g_autofree char *dir = g_dir_make_tmp ("vdit-vocab-XXXXXX", NULL);
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  GString *edited = g_string_new (text);
  g_assert_cmpint (g_string_replace (edited, "\"vocab_size\": 100", "\"vocab_size\": 3", 1), ==, 1);
  g_assert_true (g_file_set_contents (cfg, edited->str, -1, NULL));
  g_string_free (edited, TRUE);
  vdit_model *m = vdit_model_new_random (cfg, 3, &error);
  g_assert_no_error (error);
  vdit_ctx *ctx = vdit_ctx_new (m, NULL, &error);
  g_assert_no_error (error);
  vdit_gen_params p;
  params (&p, "random weights", 1);
  g_assert_false (vdit_generate (ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG);
  g_assert_nonnull (strstr (error->message, "vocab_size"));
  g_clear_error (&error);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
  g_remove (cfg);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/generate/frames-and-determinism", fixture, NULL, fixture_setup,
              test_frames_and_determinism, fixture_teardown);
  g_test_add ("/generate/cancel", fixture, NULL, fixture_setup, test_cancel, fixture_teardown);
  g_test_add ("/generate/frame-callback-stops", fixture, NULL, fixture_setup,
              test_frame_callback_stops, fixture_teardown);
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++) {
    g_autofree char *path = g_strdup_printf ("/generate/bad/%s", bad_cases[i].name);
    g_test_add (path, fixture, &bad_cases[i], fixture_setup, test_bad_params, fixture_teardown);
  }
  g_test_add_func ("/generate/missing-model", test_missing_model);
  g_test_add_func ("/generate/cuda-without-gpu", test_cuda_without_gpu);
  g_test_add_func ("/generate/device-request", test_device_request);
  g_test_add_func ("/generate/random-model", test_random_model);
  g_test_add_func ("/generate/random-model-tiny-vocab", test_random_model_tiny_vocab);
  return g_test_run ();
}
