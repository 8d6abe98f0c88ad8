/* vdit_generate through the public API on models/tiny: frame counts, determinism,
 * progress, cancellation from another thread (and how soon it stops), one error per bad
 * parameter, the guidance rule, NaN/inf latents, and requests beyond the host's memory. */
#include "attention_plan.h"
#include "backend_timing.h"
#include "ctx.h"
#include "model.h"
#include "st_writer.h"
#include "test_util.h"
#include "vdit.h"
#include "vdit_bench.h"

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
  int stage_starts; /* stages whose first report was step 0 before any of their work */
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
  /* each stage reports its start (step 0) first: the denoising before step 1, the
   * decoding before the first frame */
  if (step == 0 && ((stage == VDIT_STAGE_DENOISE && s->last_step == -1) ||
                    (stage == VDIT_STAGE_DECODE && s->frames == 0)))
    s->stage_starts++;
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
  s->last_step = -1; /* the stage begins with step 0 */
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
  g_assert_cmpint (s.stage_starts, ==, 2);
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
  /* -1 is the model's default; any other negative value is an error, not the default */
  { "guidance-negative", "a red circle", 0, 0, -0.5f, -1, VDIT_ATTENTION_DEFAULT, "guidance = -0.5" },
  { "guidance-minus-two", "a red circle", 0, 0, -2, -1, VDIT_ATTENTION_DEFAULT, "guidance = -2" },
  { "guidance-minus-inf", "a red circle", 0, 0, -INFINITY, -1, VDIT_ATTENTION_DEFAULT, "guidance = -inf" },
  { "guidance-inf", "a red circle", 0, 0, INFINITY, -1, VDIT_ATTENTION_DEFAULT, "guidance = inf" },
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
  /* the up-front check says the same without generating */
  g_assert_false (vdit_gen_params_check (f->ctx, &p, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT);
  if (!strstr (error->message, c->message_part))
    g_error ("message \"%s\" does not mention \"%s\"", error->message, c->message_part);
  g_clear_error (&error);
}

/* One rule for the guidance scale: -1 is the model's default, 0 ≤ g ≤ 1 disables guidance
 * (one pass per step: the same frames for every such g), g > 1 guides. */
static void
test_guidance_rule (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  sink s;
  static const float off[] = { 0.0f, 0.5f, 1.0f };
  g_autofree char *first = NULL, *dflt = NULL, *model_g = NULL;
  params (&p, "a red circle moving left", 4);
  p.frames = 2;
  for (guint i = 0; i < G_N_ELEMENTS (off); i++) {
    g_autofree char *d = NULL;
    p.guidance = off[i];
    g_assert_true (run (f, &p, &s, &d, &error));
    g_assert_no_error (error);
    if (first == NULL)
      first = g_strdup (d);
    g_assert_cmpstr (d, ==, first);
  }
  p.guidance = -1.0f;
  g_assert_true (run (f, &p, &s, &dflt, &error));
  g_assert_no_error (error);
  p.guidance = vdit_model_get_info (f->model)->guidance;
  g_assert_cmpfloat (p.guidance, >, 1.0f);
  g_assert_true (run (f, &p, &s, &model_g, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (dflt, ==, model_g);
  g_assert_cmpstr (dflt, !=, first);
}

/* models/tiny copied to a new directory with every weight replaced by `value` (F16
 * tensors get `value16`, its nearest half; replace FALSE: the weights as they are), and
 * the config edited (NULL: as is). */
static char *
tiny_copy_with_weights (gboolean replace, float value, uint16_t value16,
                        const char *config_from, const char *config_to)
{
  GError *error = NULL;
  g_autofree char *src = test_source_path ("models/tiny");
  g_autofree char *st_path = g_build_filename (src, "model.safetensors", NULL);
  g_autofree char *tok_src = g_build_filename (src, "tokenizer.model", NULL);
  g_autofree char *cfg_src = g_build_filename (src, "config.json", NULL);
  char *dir = g_dir_make_tmp ("vdit-weights-XXXXXX", NULL);
  g_assert_nonnull (dir);
  vdit_safetensors *st = vdit_safetensors_open (st_path, &error);
  g_assert_no_error (error);
  st_writer *w = st_writer_new ();
  for (int i = 0; i < vdit_safetensors_count (st); i++) {
    const vdit_tensor_view *t = vdit_safetensors_get (st, i);
    const size_t n = (size_t) t->n_elements, es = vdit_dtype_size (t->dtype);
    guint8 *bytes = g_malloc (MAX (n * es, 1));
    uint32_t bits;
    memcpy (&bits, &value, 4);
    for (size_t j = 0; replace && j < n; j++) {
      if (t->dtype == VDIT_DTYPE_F32)
        memcpy (bytes + j * 4, &bits, 4);
      else {
        uint16_t h = t->dtype == VDIT_DTYPE_BF16 ? (uint16_t) (bits >> 16) : value16;
        memcpy (bytes + j * 2, &h, 2);
      }
    }
    st_writer_add (w, t->name, vdit_dtype_name (t->dtype), t->ndim, t->shape,
                   replace ? bytes : t->data, n * es);
    g_free (bytes);
  }
  vdit_safetensors_close (st);
  g_autofree char *st_out = g_build_filename (dir, "model.safetensors", NULL);
  st_writer_save (w, st_out);
  st_writer_free (w);

  g_autofree char *text = NULL, *tok = NULL;
  gsize tok_len = 0;
  g_assert_true (g_file_get_contents (cfg_src, &text, NULL, NULL));
  g_assert_true (g_file_get_contents (tok_src, &tok, &tok_len, NULL));
  GString *cfg = g_string_new (text);
  if (config_from)
    g_assert_cmpint (g_string_replace (cfg, config_from, config_to, 1), ==, 1);
  g_autofree char *cfg_out = g_build_filename (dir, "config.json", NULL);
  g_autofree char *tok_out = g_build_filename (dir, "tokenizer.model", NULL);
  g_assert_true (g_file_set_contents (cfg_out, cfg->str, -1, NULL));
  g_assert_true (g_file_set_contents (tok_out, tok, tok_len, NULL));
  g_string_free (cfg, TRUE);
  return dir;
}

/* Weights or sampler settings that make the latent NaN or infinite: the generation fails
 * and names the step, no frame (a uniform grey one) comes out. A loader that refuses them
 * outright is fine too (refused_at_load_ok). */
static void
check_non_finite (const char *dir, gboolean refused_at_load_ok)
{
  GError *error = NULL;
  vdit_model *m = vdit_model_load (dir, &error);
  if (m == NULL && refused_at_load_ok) {
    g_test_message ("the loader refused the weights: %s", error->message);
    g_clear_error (&error);
    return;
  }
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  vdit_ctx *ctx = vdit_ctx_new (m, &cp, &error);
  g_assert_no_error (error);
  fixture f = { m, ctx };
  vdit_gen_params p;
  sink s;
  params (&p, "a red circle moving left", 1);
  p.frames = 2;
  g_assert_false (run (&f, &p, &s, NULL, &error));
  test_check_error (error, VDIT_ERROR, VDIT_ERROR_NOT_FINITE, "NaN/inf", "at step 1", NULL);
  g_clear_error (&error);
  g_assert_cmpint (s.frames, ==, 0);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
}

static void
test_non_finite_weights (void)
{
  /* all NaN */
  g_autofree char *nan_dir = tiny_copy_with_weights (TRUE, NAN, 0x7e00, NULL, NULL);
  check_non_finite (nan_dir, TRUE);
  test_rmdir (nan_dir);
  /* finite, but so large that the first matmul overflows */
  g_autofree char *huge_dir = tiny_copy_with_weights (TRUE, 3e38f, 0x7bff, NULL, NULL);
  check_non_finite (huge_dir, FALSE);
  test_rmdir (huge_dir);
  /* a time shift so large that the schedule's arithmetic overflows */
  g_autofree char *shift_dir = tiny_copy_with_weights (FALSE, 0, 0, "\"shift\": 1.0",
                                                       "\"shift\": 1e308");
  check_non_finite (shift_dir, TRUE);
  test_rmdir (shift_dir);
}

typedef struct {
  vdit_ctx *ctx;
  GMutex lock;
  GCond cond;
  gboolean encoded;   /* the step to cancel in has started */
  int at_step;        /* 0: the first step (the prompts are encoded); k: step k */
  gint64 cancelled_at;
} canceller;

static void
on_progress_encoded (void *user_data, VditStage stage, int step, int steps)
{
  canceller *c = user_data;
  /* DENOISE reports step k when step k − 1 is done */
  if ((c->at_step == 0 && stage == VDIT_STAGE_ENCODE_TEXT && step == steps) ||
      (c->at_step > 0 && stage == VDIT_STAGE_DENOISE && step == c->at_step)) {
    g_mutex_lock (&c->lock);
    c->encoded = TRUE;
    g_cond_signal (&c->cond);
    g_mutex_unlock (&c->lock);
  }
}

static gpointer
cancel_in_first_step (gpointer data)
{
  canceller *c = data;
  g_mutex_lock (&c->lock);
  while (!c->encoded)
    g_cond_wait (&c->cond, &c->lock);
  g_mutex_unlock (&c->lock);
  g_usleep (300 * 1000); /* well inside the first transformer block */
  c->cancelled_at = g_get_monotonic_time ();
  vdit_cancel (c->ctx);
  return NULL;
}

/* A cancel in the middle of a long transformer block (4096 frames: 32768 tokens, seconds
 * of dense attention per block on the CPU) stops the generation within a bounded time. */
#define CANCEL_LATENCY_BOUND_MS 500

/* data: NULL for the model's FULL attention, else a cancel_case. */
typedef struct {
  VditAttention attention;
  int frames;
  int at_step;
} cancel_case;
/* ADAPTIVE in its dense warm-up step, which the policy hands back to the DiT to run in
 * chunks; and in its first search step (a dense pass that keeps the LSE, block scores,
 * the sparse call: long single ops whose CPU tasks are skipped once cancelled). 1,536
 * frames make the search step take seconds on 2 cores, and step 0 well under a minute. */
static const cancel_case cancel_adaptive_warmup = { VDIT_ATTENTION_ADAPTIVE, 4096, 0 };
static const cancel_case cancel_adaptive_search = { VDIT_ATTENTION_ADAPTIVE, 1536, 1 };

static void
test_cancel_latency (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  const cancel_case *cc = data;
  canceller c = { .ctx = f->ctx, .at_step = cc ? cc->at_step : 0 };
  g_mutex_init (&c.lock);
  g_cond_init (&c.cond);
  params (&p, "a red circle moving left", 1);
  p.frames = 4096;
  p.steps = 1;
  if (cc) {
    p.attention = cc->attention;
    p.frames = cc->frames;
    p.steps = 5; /* warm-up 0.2: step 0 is dense, step 1 searches */
  }
  p.progress = on_progress_encoded;
  p.user_data = &c;
  GThread *t = g_thread_new ("cancel", cancel_in_first_step, &c);
  g_assert_false (vdit_generate (f->ctx, &p, &error));
  const gint64 returned = g_get_monotonic_time ();
  g_thread_join (t);
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED);
  g_clear_error (&error);
  const double ms = (returned - c.cancelled_at) / 1000.0;
  g_test_message ("stopped %.1f ms after vdit_cancel", ms);
  if (g_test_verbose ())
    g_printerr ("cancel latency: %.1f ms\n", ms);
  g_assert_cmpfloat (ms, <, CANCEL_LATENCY_BOUND_MS);
  g_mutex_clear (&c.lock);
  g_cond_clear (&c.cond);
}

/* On the CPU dense self-attention runs in chunks of query rows (sized by their measured
 * time) so that a cancel is seen between them: the latent is the same bit for bit as with
 * the attention in one call, here through a FULL policy (attention_plan.c), which does
 * not split it. 512 frames: 4096 tokens, chunks from 128 rows growing as they prove fast. */
static void
test_chunked_attention_exact (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  params (&p, "a red circle moving left", 5);
  p.frames = 512;
  p.steps = 1;
  p.guidance = 0.0f;
  const vdit_config *cfg = vdit_model_get_config (f->model);
  int grid[3];
  vdit_model_token_grid (f->model, p.frames, grid);
  const size_t n = (size_t) p.frames * cfg->height * cfg->width * cfg->dit.in_channels;
  g_autofree float *chunked = g_new (float, n);
  g_autofree float *whole = g_new (float, n);
  g_assert_true (vdit_generate_latent (f->ctx, &p, chunked, &error));
  g_assert_no_error (error);
  vdit_attn_policy_params pp = {
    .mode = VDIT_ATTENTION_FULL,
    .frames = grid[0],
    .tokens_per_frame = grid[1] * grid[2],
    .depth = cfg->dit.depth,
    .heads = cfg->dit.heads,
    .head_dim = cfg->dit.head_dim,
    .steps = p.steps,
    .sparsity = -1.0f,
  };
  vdit_attn_policy *full = vdit_attn_policy_new (vdit_ctx_get_backend (f->ctx), cfg, &pp,
                                                 &error);
  g_assert_no_error (error);
  g_assert_true (vdit_generate_with_policy (f->ctx, &p, full, whole, &error));
  g_assert_no_error (error);
  vdit_attn_policy_free (full);
  g_assert_cmpmem (chunked, n * sizeof (float), whole, n * sizeof (float));
}

/* A random-weight model from models/tiny's config with the video size (and the temporal
 * patch, when not NULL) replaced. */
static vdit_model *
tiny_resized (const char *side, const char *patch, char **dir)
{
  GError *error = NULL;
  g_autofree char *src = test_source_path ("models/tiny/config.json");
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (src, &text, NULL, NULL));
  *dir = g_dir_make_tmp ("vdit-memory-XXXXXX", NULL);
  g_autofree char *cfg = g_build_filename (*dir, "config.json", NULL);
  GString *edited = g_string_new (text);
  g_autofree char *h = g_strdup_printf ("\"height\": %s", side);
  g_autofree char *w = g_strdup_printf ("\"width\": %s", side);
  g_assert_cmpint (g_string_replace (edited, "\"height\": 16", h, 1), ==, 1);
  g_assert_cmpint (g_string_replace (edited, "\"width\": 16", w, 1), ==, 1);
  if (patch) {
    g_autofree char *p = g_strdup_printf ("\"patch\": [%s, 4, 4]", patch);
    g_autofree char *f = g_strdup_printf ("\"frames\": %s", patch);
    g_assert_cmpint (g_string_replace (edited, "\"patch\": [2, 4, 4]", p, 1), ==, 1);
    g_assert_cmpint (g_string_replace (edited, "\"frames\": 8", f, 1), ==, 1);
  }
  g_assert_true (g_file_set_contents (cfg, edited->str, -1, NULL));
  g_string_free (edited, TRUE);
  vdit_model *m = vdit_model_new_random (cfg, 3, &error);
  g_assert_no_error (error);
  return m;
}

/* A clip whose memory estimate exceeds the host's is refused up front with the numbers,
 * never left to abort in an allocation or to the OOM killer: 4096 frames of 8192 × 8192
 * (the largest a config may ask for) need about 40 TiB. */
static void
test_memory_too_large (void)
{
  GError *error = NULL;
  g_autofree char *dir = NULL;
  vdit_model *m = tiny_resized ("8192", NULL, &dir);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  vdit_ctx *ctx = vdit_ctx_new (m, &cp, &error);
  if (ctx == NULL) {
    /* a host of less than about 20 GiB: even 2 frames of this size do not fit */
    test_check_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "shortest clip", "GiB",
                      NULL);
    g_clear_error (&error);
  } else {
    vdit_gen_params p;
    params (&p, "a red circle", 1);
    p.frames = 4096;
    gint64 t0 = g_get_monotonic_time ();
    g_assert_false (vdit_gen_params_check (ctx, &p, &error));
    test_check_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "4096 frames", "GiB",
                      "host", NULL);
    g_clear_error (&error);
    g_assert_false (vdit_generate (ctx, &p, &error));
    test_check_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "4096 frames", "GiB",
                      "host", NULL);
    g_clear_error (&error);
    g_assert_cmpint (g_get_monotonic_time () - t0, <, G_USEC_PER_SEC);
    /* the shortest clip of this size is fine where the context could be made */
    p.frames = 2;
    g_assert_true (vdit_gen_params_check (ctx, &p, &error));
    g_assert_no_error (error);
    vdit_ctx_free (ctx);
  }
  vdit_model_free (m);
  test_rmdir (dir);
  g_free (g_steal_pointer (&dir));

  /* a model whose shortest clip (256 frames of 8192 × 8192: about 1.5 TiB) no host here
   * holds is refused by vdit_ctx_new itself, before its weights are loaded */
  m = tiny_resized ("8192", "256", &dir);
  g_assert_null (vdit_ctx_new (m, &cp, &error));
  test_check_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "shortest clip",
                    "256 frames", "GiB", NULL);
  g_clear_error (&error);
  vdit_model_free (m);
  test_rmdir (dir);
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
  sink s;
  g_autofree char *a = NULL, *b = NULL;
  g_assert_true (run (&(fixture) { m, ctx }, &p, &s, &a, &error));
  g_assert_no_error (error);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
  /* vdit_model_load on a config.json alone: the same architecture, random weights of
   * seed 0, so a different clip from seed 3's */
  m = vdit_model_load (cfg, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vdit_model_get_info (m)->n_params, >, 0);
  ctx = vdit_ctx_new (m, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (run (&(fixture) { m, ctx }, &p, &s, &b, &error));
  g_assert_no_error (error);
  g_assert_cmpint (s.frames, ==, vdit_model_get_info (m)->frames);
  g_assert_cmpstr (a, !=, b);
  vdit_ctx_free (ctx);
  vdit_model_free (m);
  g_autofree char *other = test_source_path ("models/tiny/tokenizer.model");
  g_assert_null (vdit_model_load (other, &error));
  g_assert_error (error, VDIT_ERROR, VDIT_ERROR_MISSING);
  g_clear_error (&error);
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

/* A short guided clip of the tiny model: both passes every step. */
static void
guided_params (vdit_gen_params *p)
{
  params (p, "a red circle moving left", 3);
  p->frames = 4;
  p->guidance = 3.0f;
}

/* The timing wrapper of `vdit bench step --breakdown` only passes ops through: a clip
 * generated through it is the same to the bit, and every kind the DiT uses is counted. */
static void
test_timing_wrapper (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  sink s;
  g_autofree char *plain = NULL, *timed = NULL;
  guided_params (&p);
  g_assert_true (run (f, &p, &s, &plain, &error));
  g_assert_no_error (error);
  vdit_backend *be = vdit_ctx_get_backend (f->ctx);
  const vdit_backend_i *iface = be->iface;
  vdit_backend_timing *t = vdit_backend_timing_wrap (be);
  g_assert_true (be->iface != iface);
  g_assert_true (run (f, &p, &s, &timed, &error));
  g_assert_no_error (error);
  vdit_op_times times = { 0 }, again = { 0 };
  g_assert_true (vdit_backend_timing_collect (t, &times, &error));
  g_assert_no_error (error);
  /* collecting starts the counters again */
  g_assert_true (vdit_backend_timing_collect (t, &again, &error));
  for (int k = 0; k < VDIT_OP_KINDS; k++)
    g_assert_cmpint (again.calls[k], ==, 0);
  vdit_backend_timing_unwrap (be, t);
  g_assert_true (be->iface == iface);
  g_assert_cmpstr (plain, ==, timed);
  for (int k = 0; k < VDIT_OP_KINDS; k++) {
    if (k != VDIT_OP_TRANSFER) /* the CPU backend's tensors live in host memory */
      g_assert_cmpint (times.calls[k], >, 0);
    g_assert_cmpfloat (times.ms[k], >=, 0.0);
    g_assert_nonnull (vdit_op_kind_name (k));
  }
}

/* A guided clip whose unconditional passes start from the conditional passes' block-0
 * self-attention (the default) is the clip of full passes: the same final latent to the
 * bit. `vdit bench step` says which it ran. */
static void
test_guided_prefix (fixture *f, gconstpointer data)
{
  GError *error = NULL;
  vdit_gen_params p;
  guided_params (&p);
  const vdit_config *cfg = f->model->config;
  const size_t n = (size_t) vdit_model_latent_frames (f->model, p.frames) * cfg->latent_height *
                   cfg->latent_width * cfg->dit.in_channels;
  g_autofree float *shared = g_new (float, n), *full = g_new (float, n);
  g_assert_true (vdit_generate_latent (f->ctx, &p, shared, &error));
  g_assert_no_error (error);
  vdit_bench_step_params bp = { .frames = 4, .attention = VDIT_ATTENTION_FULL, .repeat = 1,
                                .guidance = 3.0f };
  vdit_bench_step_result r;
  g_assert_true (vdit_bench_dit_step (f->ctx, &bp, &r, &error));
  g_assert_no_error (error);
  g_assert_true (r.shared_prefix);
  g_setenv ("VDIT_GUIDED_PREFIX", "0", TRUE);
  g_assert_true (vdit_generate_latent (f->ctx, &p, full, &error));
  g_assert_true (vdit_bench_dit_step (f->ctx, &bp, &r, &error));
  g_unsetenv ("VDIT_GUIDED_PREFIX");
  g_assert_no_error (error);
  g_assert_false (r.shared_prefix);
  g_assert_cmpmem (shared, n * sizeof (float), full, n * sizeof (float));
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
  g_test_add ("/generate/guided-prefix", fixture, NULL, fixture_setup, test_guided_prefix,
              fixture_teardown);
  g_test_add ("/generate/guidance-rule", fixture, NULL, fixture_setup, test_guidance_rule,
              fixture_teardown);
  g_test_add_func ("/generate/non-finite-weights", test_non_finite_weights);
  g_test_add ("/generate/cancel-latency", fixture, NULL, fixture_setup, test_cancel_latency,
              fixture_teardown);
  g_test_add ("/generate/cancel-latency-adaptive", fixture, &cancel_adaptive_warmup,
              fixture_setup, test_cancel_latency, fixture_teardown);
  g_test_add ("/generate/cancel-latency-search", fixture, &cancel_adaptive_search,
              fixture_setup, test_cancel_latency, fixture_teardown);
  g_test_add ("/generate/chunked-attention-exact", fixture, NULL, fixture_setup,
              test_chunked_attention_exact, fixture_teardown);
  g_test_add ("/generate/timing-wrapper", fixture, NULL, fixture_setup, test_timing_wrapper,
              fixture_teardown);
  g_test_add_func ("/generate/memory-too-large", test_memory_too_large);
  g_test_add_func ("/generate/missing-model", test_missing_model);
  g_test_add_func ("/generate/cuda-without-gpu", test_cuda_without_gpu);
  g_test_add_func ("/generate/device-request", test_device_request);
  g_test_add_func ("/generate/random-model", test_random_model);
  g_test_add_func ("/generate/random-model-tiny-vocab", test_random_model_tiny_vocab);
  return g_test_run ();
}
