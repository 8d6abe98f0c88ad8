/* config.json: parsing and validation against docs/model-format.md, and writing an
 * attention plan back. Every error names the file, the key and the bad value. */
#include "config.h"

#include "load_util.h"

#include <json-glib/json-glib.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* One JSON object of the config ("dit", "sampler", …) being read. */
typedef struct {
  const char *origin; /* file name for messages */
  const char *name;   /* section name; NULL at the top level */
  JsonObject *obj;    /* NULL: an absent optional section, every key takes its default */
} section;

static char *
full_key (const section *s, const char *key)
{
  return s->name ? g_strdup_printf ("%s.%s", s->name, key) : g_strdup (key);
}

static gboolean
fail_text (const section *s, const char *key, const char *value, const char *why,
           GError **error)
{
  char *k = full_key (s, key);
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG, "%s: %s = %s %s", s->origin, k, value, why);
  g_free (k);
  return FALSE;
}

static gboolean
fail_missing (const section *s, const char *key, GError **error)
{
  char *k = full_key (s, key);
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG, "%s: %s is missing", s->origin, k);
  g_free (k);
  return FALSE;
}

/* A bad number: "origin: dit.head_dim = 10 must be divisible by 6". */
static gboolean G_GNUC_PRINTF (5, 6)
bad_num (const section *s, const char *key, double v, GError **error, const char *fmt, ...)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  va_list ap;
  va_start (ap, fmt);
  char *why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fail_text (s, key, g_ascii_formatd (buf, sizeof buf, "%.10g", v), why, error);
  g_free (why);
  return FALSE;
}

static gboolean
bad_node (const section *s, const char *key, JsonNode *node, const char *why, GError **error)
{
  char *text = json_to_string (node, FALSE);
  fail_text (s, key, text, why, error);
  g_free (text);
  return FALSE;
}

/* The member, or NULL when absent or JSON null. */
static JsonNode *
member (const section *s, const char *key)
{
  if (s->obj == NULL || !json_object_has_member (s->obj, key))
    return NULL;
  JsonNode *n = json_object_get_member (s->obj, key);
  return JSON_NODE_HOLDS_NULL (n) ? NULL : n;
}

static gboolean
node_number (JsonNode *n, double *out)
{
  GType t = JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return FALSE;
  return TRUE;
}

static gboolean
get_double (const section *s, const char *key, gboolean required, double def, double *out,
            GError **error)
{
  JsonNode *n = member (s, key);
  if (n == NULL) {
    *out = def;
    return required ? fail_missing (s, key, error) : TRUE;
  }
  if (!node_number (n, out))
    return bad_node (s, key, n, "must be a number", error);
  /* json-glib reads 1e999 as inf */
  return isfinite (*out) ? TRUE : bad_num (s, key, *out, error, "must be a finite number");
}

/* A float > 0 (eps, rope_theta, shift…). */
static gboolean
get_positive (const section *s, const char *key, gboolean required, double def, double *out,
              GError **error)
{
  if (!get_double (s, key, required, def, out, error))
    return FALSE;
  return *out > 0 ? TRUE : bad_num (s, key, *out, error, "must be greater than 0");
}

static gboolean
get_float (const section *s, const char *key, gboolean required, double def, double lo,
           double hi, float *out, GError **error)
{
  double v;
  if (!get_double (s, key, required, def, &v, error))
    return FALSE;
  if (v < lo && hi >= G_MAXFLOAT)
    return bad_num (s, key, v, error, "must be at least %g", lo);
  if (v < lo || v > hi)
    return bad_num (s, key, v, error, "must be in [%g, %g]", lo, hi);
  *out = (float) v;
  return TRUE;
}

static gboolean
check_int (const section *s, const char *key, double v, int min, int max, GError **error)
{
  if (v != floor (v) || !isfinite (v))
    return bad_num (s, key, v, error, "must be an integer");
  if (v < min)
    return bad_num (s, key, v, error, "must be at least %d", min);
  if (v > max)
    return bad_num (s, key, v, error, "must be at most %d", max);
  return TRUE;
}

/* An int in [min, max]. */
static gboolean
get_int_in (const section *s, const char *key, gboolean required, int def, int min, int max,
            int *out, GError **error)
{
  double v;
  if (!get_double (s, key, required, def, &v, error) || !check_int (s, key, v, min, max, error))
    return FALSE;
  *out = (int) v;
  return TRUE;
}

/* An int of at least min. */
static gboolean
get_int (const section *s, const char *key, gboolean required, int def, int min, int *out,
         GError **error)
{
  return get_int_in (s, key, required, def, min, INT_MAX, out, error);
}

/* One of names[]; def NULL = required. */
static gboolean
get_choice (const section *s, const char *key, const char *def, const char *const *names,
            int n_names, int *out, GError **error)
{
  JsonNode *n = member (s, key);
  if (n == NULL && def == NULL)
    return fail_missing (s, key, error);
  const char *v = def;
  if (n != NULL) {
    if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
      return bad_node (s, key, n, "must be a string", error);
    v = json_node_get_string (n);
  }
  for (int i = 0; i < n_names; i++) {
    if (g_str_equal (v, names[i])) {
      *out = i;
      return TRUE;
    }
  }
  char *list = g_strjoinv ("\", \"", (char **) names);
  char *why = g_strdup_printf (n_names == 1 ? "must be \"%s\"" : "must be one of \"%s\"", list);
  gboolean ok = n ? bad_node (s, key, n, why, error) : fail_text (s, key, v, why, error);
  g_free (why);
  g_free (list);
  return ok;
}

/* A number array; *arr NULL when absent. len ≥ 0 demands that many entries. */
static gboolean
get_array (const section *s, const char *key, int len, JsonArray **arr, GError **error)
{
  JsonNode *n = member (s, key);
  *arr = NULL;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (n))
    return bad_node (s, key, n, "must be an array", error);
  JsonArray *a = json_node_get_array (n);
  int got = (int) json_array_get_length (a);
  if (len >= 0 && got != len) {
    char *why = g_strdup_printf ("must have %d entries (has %d)", len, got);
    bad_node (s, key, n, why, error);
    g_free (why);
    return FALSE;
  }
  for (int i = 0; i < got; i++) {
    double v;
    if (!node_number (json_array_get_element (a, i), &v)) {
      char *k = g_strdup_printf ("%s[%d]", key, i);
      bad_node (s, k, json_array_get_element (a, i), "must be a number", error);
      g_free (k);
      return FALSE;
    }
  }
  *arr = a;
  return TRUE;
}

static double
array_num (JsonArray *a, int i)
{
  double v = 0;
  node_number (json_array_get_element (a, i), &v);
  return v;
}

/* Entry i of an int array, at least min. */
static gboolean
array_int (const section *s, const char *key, JsonArray *a, int i, int min, int *out,
           GError **error)
{
  char *k = g_strdup_printf ("%s[%d]", key, i);
  double v = array_num (a, i);
  gboolean ok = check_int (s, k, v, min, INT_MAX, error);
  g_free (k);
  *out = ok ? (int) v : 0;
  return ok;
}

static gboolean
array_float (const section *s, const char *key, JsonArray *a, int i, double lo, double hi,
             gboolean lo_open, float *out, GError **error)
{
  double v = array_num (a, i);
  *out = (float) v;
  if (v >= lo && v <= hi && !(lo_open && v == lo))
    return TRUE;
  char *k = g_strdup_printf ("%s[%d]", key, i);
  if (lo_open)
    bad_num (s, k, v, error, "must be greater than %g", lo);
  else
    bad_num (s, k, v, error, "must be in [%g, %g]", lo, hi);
  g_free (k);
  return FALSE;
}

static gboolean
get_section (JsonObject *root, const char *origin, const char *name, gboolean required,
             section *s, GError **error)
{
  section top = { origin, NULL, root };
  JsonNode *n = member (&top, name);
  *s = (section) { origin, name, NULL };
  if (n == NULL)
    return required ? fail_missing (&top, name, error) : TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return bad_node (&top, name, n, "must be an object", error);
  s->obj = json_node_get_object (n);
  return TRUE;
}

static char *
default_name (const char *origin)
{
  char *dir = g_path_get_dirname (origin);
  char *base = g_path_get_basename (dir);
  g_free (dir);
  if (g_str_equal (base, ".") || g_str_equal (base, G_DIR_SEPARATOR_S)) {
    g_free (base);
    return g_strdup ("model");
  }
  return base;
}

static gboolean
parse_header (JsonObject *root, const char *origin, vdit_config *cfg, GError **error)
{
  section s = { origin, NULL, root };
  static const char *const formats[] = { "vdit", NULL };
  int fmt, version;
  if (!get_choice (&s, "format", NULL, formats, 1, &fmt, error) ||
      !get_int (&s, "version", TRUE, 1, 0, &version, error))
    return FALSE;
  if (version != 1)
    return bad_num (&s, "version", version, error, "must be 1");
  JsonNode *n = member (&s, "name");
  if (n && (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING))
    return bad_node (&s, "name", n, "must be a string", error);
  cfg->name = n ? g_strdup (json_node_get_string (n)) : default_name (origin);
  return TRUE;
}

static gboolean
parse_dit (JsonObject *root, const char *origin, vdit_dit_config *d, GError **error)
{
  section s;
  static const char *const abs_pos[] = { "none", "sincos" };
  JsonArray *patch, *scale;
  double theta, eps;
  int abs_kind;
  if (!get_section (root, origin, "dit", TRUE, &s, error) ||
      !get_int (&s, "hidden", TRUE, 0, 1, &d->hidden, error) ||
      !get_int (&s, "depth", TRUE, 0, 1, &d->depth, error) ||
      !get_int (&s, "heads", TRUE, 0, 1, &d->heads, error) ||
      !get_int (&s, "head_dim", TRUE, 0, 1, &d->head_dim, error) ||
      !get_int (&s, "in_channels", TRUE, 0, 1, &d->in_channels, error) ||
      !get_int (&s, "ffn_hidden", TRUE, 0, 1, &d->ffn_hidden, error) ||
      !get_int (&s, "freq_dim", TRUE, 0, 2, &d->freq_dim, error) ||
      !get_positive (&s, "rope_theta", FALSE, 10000.0, &theta, error) ||
      !get_positive (&s, "eps", FALSE, 1e-6, &eps, error) ||
      !get_choice (&s, "abs_pos", "none", abs_pos, 2, &abs_kind, error) ||
      !get_array (&s, "patch", 3, &patch, error) ||
      !get_array (&s, "rope_scale", 3, &scale, error))
    return FALSE;
  d->rope_theta = (float) theta;
  d->eps = (float) eps;
  d->abs_pos = abs_kind == 1;
  if (d->head_dim % 6 != 0)
    return bad_num (&s, "head_dim", d->head_dim, error,
                    "must be divisible by 6 (3D RoPE splits it into three even chunks)");
  if ((int64_t) d->heads * d->head_dim != d->hidden)
    return bad_num (&s, "hidden", d->hidden, error, "must equal dit.heads * dit.head_dim = %d * %d",
                    d->heads, d->head_dim);
  if (d->freq_dim % 2 != 0)
    return bad_num (&s, "freq_dim", d->freq_dim, error, "must be even");
  if (patch == NULL)
    return fail_missing (&s, "patch", error);
  for (int i = 0; i < 3; i++) {
    d->rope_scale[i] = 1.0f;
    if (!array_int (&s, "patch", patch, i, 1, &d->patch[i], error) ||
        (scale && !array_float (&s, "rope_scale", scale, i, 0, G_MAXFLOAT, TRUE,
                                &d->rope_scale[i], error)))
      return FALSE;
  }
  return TRUE;
}

static gboolean
parse_video (JsonObject *root, const char *origin, vdit_config *cfg, GError **error)
{
  section s;
  const int *p = cfg->dit.patch;
  if (!get_section (root, origin, "video", TRUE, &s, error) ||
      !get_int_in (&s, "frames", TRUE, 0, 1, VDIT_MAX_FRAMES, &cfg->frames, error) ||
      !get_int_in (&s, "height", TRUE, 0, 1, VDIT_MAX_VIDEO_SIDE, &cfg->height, error) ||
      !get_int_in (&s, "width", TRUE, 0, 1, VDIT_MAX_VIDEO_SIDE, &cfg->width, error) ||
      !get_double (&s, "fps", FALSE, 24.0, &cfg->fps, error))
    return FALSE;
  /* the y4m header and the buffer timestamps carry it as a fraction of ints */
  if (!(cfg->fps >= VDIT_MIN_FPS && cfg->fps <= VDIT_MAX_FPS))
    return bad_num (&s, "fps", cfg->fps, error, "must be in [%g, %g]", VDIT_MIN_FPS,
                    VDIT_MAX_FPS);
  if (cfg->height % p[1] != 0)
    return bad_num (&s, "height", cfg->height, error, "must be divisible by dit.patch[1] = %d",
                    p[1]);
  if (cfg->width % p[2] != 0)
    return bad_num (&s, "width", cfg->width, error, "must be divisible by dit.patch[2] = %d", p[2]);
  return TRUE;
}

/* decoder.type causal_video_vae: latents of (frames − 1)/4 + 1 frames of (height/8) ×
 * (width/8), `channels` of them, patched by the DiT. */
static gboolean
check_causal_video_vae (const section *s, const char *origin, vdit_config *cfg, GError **error)
{
  const int *p = cfg->dit.patch;
  const int tf = VDIT_VAE_TIME_FACTOR, sf = VDIT_VAE_SPACE_FACTOR;
  section v = { origin, "video", NULL };
  double scaling;
  if (!get_positive (s, "scaling_factor", FALSE, 0.18215, &scaling, error))
    return FALSE;
  cfg->vae_scaling_factor = (float) scaling;
  if ((cfg->frames - 1) % tf != 0 || ((cfg->frames - 1) / tf + 1) % p[0] != 0)
    return bad_num (&v, "frames", cfg->frames, error,
                    "must be 1 + %d·k with 1 + k divisible by dit.patch[0] = %d "
                    "(causal_video_vae decoder: latent frames)", tf, p[0]);
  if (cfg->height % (sf * p[1]) != 0)
    return bad_num (&v, "height", cfg->height, error,
                    "must be divisible by %d (causal_video_vae: 8 × dit.patch[1])", sf * p[1]);
  if (cfg->width % (sf * p[2]) != 0)
    return bad_num (&v, "width", cfg->width, error,
                    "must be divisible by %d (causal_video_vae: 8 × dit.patch[2])", sf * p[2]);
  if (p[0] != 1) {
    section d = { origin, "dit", NULL };
    return bad_num (&d, "patch", p[0], error,
                    "must start with 1 for decoder.type causal_video_vae (as Open-Sora-Plan v1.2)");
  }
  cfg->latent_height = cfg->height / sf;
  cfg->latent_width = cfg->width / sf;
  return TRUE;
}

static gboolean
parse_decoder (JsonObject *root, const char *origin, vdit_config *cfg, GError **error)
{
  static const char *const types[] = { "identity", "causal_video_vae", NULL };
  section s;
  int type;
  if (!get_section (root, origin, "decoder", TRUE, &s, error) ||
      !get_choice (&s, "type", NULL, types, 2, &type, error))
    return FALSE;
  cfg->decoder = (VditDecoderType) type;
  const int default_channels = type == VDIT_DECODER_IDENTITY ? 3 : 4;
  if (!get_int (&s, "channels", FALSE, default_channels, 1, &cfg->decoder_channels, error))
    return FALSE;
  if (type == VDIT_DECODER_CAUSAL_VIDEO_VAE) {
    if (!check_causal_video_vae (&s, origin, cfg, error))
      return FALSE;
  } else {
    /* identity: the DiT works on RGB pixels, one latent frame per video frame */
    cfg->latent_height = cfg->height;
    cfg->latent_width = cfg->width;
    if (cfg->decoder_channels != 3)
      return bad_num (&s, "channels", cfg->decoder_channels, error,
                      "must be 3 for decoder.type identity");
    if (cfg->frames % cfg->dit.patch[0] != 0) {
      section v = { origin, "video", NULL };
      return bad_num (&v, "frames", cfg->frames, error,
                      "must be divisible by dit.patch[0] = %d (identity decoder: latent frames)",
                      cfg->dit.patch[0]);
    }
  }
  if (cfg->dit.in_channels != cfg->decoder_channels) {
    section d = { origin, "dit", NULL };
    return bad_num (&d, "in_channels", cfg->dit.in_channels, error,
                    "must equal the decoder's latent channels (%d)", cfg->decoder_channels);
  }
  return TRUE;
}

static gboolean
parse_text (JsonObject *root, const char *origin, vdit_text_config *t, GError **error)
{
  section s;
  double eps;
  if (!get_section (root, origin, "text_encoder", TRUE, &s, error) ||
      !get_int (&s, "vocab_size", TRUE, 0, 2, &t->vocab_size, error) ||
      !get_int (&s, "d_model", TRUE, 0, 1, &t->d_model, error) ||
      !get_int (&s, "n_layers", TRUE, 0, 1, &t->n_layers, error) ||
      !get_int (&s, "n_heads", TRUE, 0, 1, &t->n_heads, error) ||
      !get_int (&s, "d_kv", TRUE, 0, 1, &t->d_kv, error) ||
      !get_int (&s, "d_ff", TRUE, 0, 1, &t->d_ff, error) ||
      !get_int (&s, "rel_buckets", TRUE, 0, 4, &t->rel_buckets, error) ||
      !get_int (&s, "rel_max_distance", TRUE, 0, 1, &t->rel_max_distance, error) ||
      !get_int (&s, "max_tokens", TRUE, 0, 1, &t->max_tokens, error) ||
      !get_positive (&s, "eps", FALSE, 1e-6, &eps, error))
    return FALSE;
  t->eps = (float) eps;
  /* the log-spaced buckets start at max_exact = rel_buckets/4 and end at the distance */
  int max_exact = t->rel_buckets / 2 / 2;
  if (t->rel_max_distance <= max_exact)
    return bad_num (&s, "rel_max_distance", t->rel_max_distance, error,
                    "must be greater than rel_buckets/4 = %d", max_exact);
  return TRUE;
}

static gboolean
check_prediction (const section *s, vdit_sampler_config *c, GError **error)
{
  static const char *const names[] = { "flow", "epsilon", "v" };
  gboolean flow = c->type == VDIT_SAMPLER_FLOW_EULER;
  if (flow != (c->prediction == VDIT_PRED_FLOW)) {
    char *v = g_strdup_printf ("\"%s\"", names[c->prediction]);
    fail_text (s, "prediction", v,
               flow ? "must be \"flow\" for sampler.type flow_euler"
                    : "must be \"epsilon\" or \"v\" for sampler.type ddim and euler_ancestral",
               error);
    g_free (v);
    return FALSE;
  }
  return TRUE;
}

static gboolean
parse_sampler (JsonObject *root, const char *origin, vdit_sampler_config *c, GError **error)
{
  static const char *const types[] = { "flow_euler", "ddim", "euler_ancestral", NULL };
  static const char *const preds[] = { "flow", "epsilon", "v", NULL };
  static const char *const scheds[] = { "linear", "scaled_linear", NULL };
  static const char *const spacings[] = { "linspace_rounded", "linspace", NULL };
  section s;
  int type, pred, sched, spacing;
  double shift, b0, b1;
  if (!get_section (root, origin, "sampler", TRUE, &s, error) ||
      !get_choice (&s, "type", NULL, types, 3, &type, error))
    return FALSE;
  c->type = (VditSamplerType) type;
  if (!get_choice (&s, "prediction", type == VDIT_SAMPLER_FLOW_EULER ? "flow" : "epsilon",
                   preds, 3, &pred, error) ||
      !get_choice (&s, "beta_schedule", "linear", scheds, 2, &sched, error) ||
      !get_choice (&s, "timestep_spacing", "linspace_rounded", spacings, 2, &spacing, error) ||
      !get_int_in (&s, "steps", FALSE, 50, 1, VDIT_MAX_STEPS, &c->steps, error) ||
      !get_float (&s, "guidance", FALSE, 4.5, 0, G_MAXFLOAT, &c->guidance, error) ||
      !get_positive (&s, "shift", FALSE, 1.0, &shift, error) ||
      !get_int_in (&s, "train_timesteps", FALSE, 1000, 1, VDIT_MAX_TRAIN_TIMESTEPS,
                   &c->train_timesteps, error) ||
      !get_double (&s, "beta_start", FALSE, 0.0001, &b0, error) ||
      !get_double (&s, "beta_end", FALSE, 0.02, &b1, error))
    return FALSE;
  c->prediction = (VditPrediction) pred;
  c->scaled_linear = sched == 1;
  c->fractional_timesteps = spacing == 1;
  c->shift = (float) shift;
  c->beta_start = (float) b0;
  c->beta_end = (float) b1;
  if (!check_prediction (&s, c, error))
    return FALSE;
  if (c->fractional_timesteps && type != VDIT_SAMPLER_EULER_ANCESTRAL) {
    fail_text (&s, "timestep_spacing", "\"linspace\"",
               "needs sampler.type euler_ancestral (ddim uses \"linspace_rounded\")", error);
    return FALSE;
  }
  if (b0 <= 0 || b0 >= 1)
    return bad_num (&s, "beta_start", b0, error, "must be in (0, 1)");
  if (b1 < b0 || b1 >= 1)
    return bad_num (&s, "beta_end", b1, error,
                    "must be at least sampler.beta_start = %g and below 1", b0);
  if (type != VDIT_SAMPLER_FLOW_EULER && c->steps > c->train_timesteps)
    return bad_num (&s, "steps", c->steps, error,
                    "must not exceed sampler.train_timesteps = %d", c->train_timesteps);
  return TRUE;
}

static gboolean
parse_plan (const section *s, int depth, vdit_attention_config *a, GError **error)
{
  JsonArray *plan;
  if (!get_array (s, "plan", -1, &plan, error))
    return FALSE;
  if (plan == NULL)
    return TRUE;
  int n = (int) json_array_get_length (plan);
  if (n != depth) {
    char *why = g_strdup_printf ("must have dit.depth = %d entries (has %d)", depth, n);
    bad_node (s, "plan", member (s, "plan"), why, error);
    g_free (why);
    return FALSE;
  }
  a->plan = g_new0 (int, depth);
  for (int i = 0; i < depth; i++)
    if (!array_int (s, "plan", plan, i, 0, &a->plan[i], error))
      return FALSE;
  return TRUE;
}

static gboolean
parse_search_steps (const section *s, vdit_attention_config *a, GError **error)
{
  JsonArray *arr;
  if (!get_array (s, "search_steps", -1, &arr, error))
    return FALSE;
  if (arr == NULL) {
    a->n_search_steps = 2;
    a->search_steps = g_new (float, 2);
    a->search_steps[0] = 0.2f;
    a->search_steps[1] = 0.6f;
    return TRUE;
  }
  a->n_search_steps = (int) json_array_get_length (arr);
  if (a->n_search_steps == 0)
    return bad_node (s, "search_steps", member (s, "search_steps"), "must not be empty", error);
  a->search_steps = g_new (float, a->n_search_steps);
  for (int i = 0; i < a->n_search_steps; i++)
    if (!array_float (s, "search_steps", arr, i, 0, 1, FALSE, &a->search_steps[i], error))
      return FALSE;
  return TRUE;
}

static gboolean
parse_attention (JsonObject *root, const char *origin, vdit_config *cfg, GError **error)
{
  static const char *const modes[] = { "full", "tile", "adaptive", NULL };
  vdit_attention_config *a = &cfg->attention;
  section s;
  int mode;
  double sparsity;
  if (!get_section (root, origin, "attention", FALSE, &s, error) ||
      !get_choice (&s, "mode", "full", modes, 3, &mode, error) ||
      !get_int (&s, "tile_k", FALSE, 1, 0, &a->tile_k, error) ||
      !get_int_in (&s, "block", FALSE, 64, 1, VDIT_MAX_ATTENTION_BLOCK, &a->block, error) ||
      !get_double (&s, "sparsity", FALSE, 0.8, &sparsity, error) ||
      !get_float (&s, "warmup", FALSE, 0.2, 0, 1, &a->warmup, error))
    return FALSE;
  a->mode = (VditAttention) mode;
  a->sparsity = (float) sparsity;
  if (sparsity < 0 || sparsity >= 1)
    return bad_num (&s, "sparsity", sparsity, error, "must be in [0, 1) (some blocks are kept)");
  return parse_plan (&s, cfg->dit.depth, a, error) && parse_search_steps (&s, a, error);
}

static gboolean
parse_root (JsonObject *root, const char *origin, vdit_config *cfg, GError **error)
{
  return parse_header (root, origin, cfg, error) &&
         parse_dit (root, origin, &cfg->dit, error) &&
         parse_video (root, origin, cfg, error) &&
         parse_decoder (root, origin, cfg, error) &&
         parse_text (root, origin, &cfg->text, error) &&
         parse_sampler (root, origin, &cfg->sampler, error) &&
         parse_attention (root, origin, cfg, error);
}

vdit_config *
vdit_config_parse (const char *json, gssize len, const char *origin, GError **error)
{
  if (origin == NULL)
    origin = "config.json";
  JsonParser *parser = vdit_json_parse (json, len < 0 ? strlen (json) : (gsize) len, origin,
                                        NULL, error);
  if (parser == NULL)
    return NULL;
  vdit_config *cfg = g_new0 (vdit_config, 1);
  if (!parse_root (json_node_get_object (json_parser_get_root (parser)), origin, cfg, error))
    g_clear_pointer (&cfg, vdit_config_free);
  g_object_unref (parser);
  return cfg;
}

vdit_config *
vdit_config_load (const char *path, GError **error)
{
  gsize len;
  char *text = vdit_read_regular (path, VDIT_CONFIG_MAX_BYTES, &len, error);
  if (text == NULL)
    return NULL;
  vdit_config *cfg = vdit_config_parse (text, (gssize) len, path, error);
  g_free (text);
  return cfg;
}

void
vdit_config_free (vdit_config *cfg)
{
  if (cfg == NULL)
    return;
  g_free (cfg->name);
  g_free (cfg->attention.plan);
  g_free (cfg->attention.search_steps);
  g_free (cfg);
}
