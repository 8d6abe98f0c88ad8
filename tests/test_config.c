/* config.json: a good config, defaults, writing the plan back, one case per rule of
 * docs/model-format.md whose error must name the file, the key and the bad value, and
 * hostile files (deep nesting, repeated keys, a FIFO, a huge file). */
#include "test_trap.h"
#include "config.h"
#include "st_writer.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir;

static const char good_json[] =
  "{\n"
  "  \"format\": \"vdit\",\n"
  "  \"version\": 1,\n"
  "  \"name\": \"tiny\",\n"
  "  \"video\": { \"frames\": 4, \"height\": 16, \"width\": 16, \"fps\": 8 },\n"
  "  \"decoder\": { \"type\": \"identity\", \"channels\": 3 },\n"
  "  \"text_encoder\": {\n"
  "    \"vocab_size\": 128, \"d_model\": 32, \"n_layers\": 2, \"n_heads\": 4, \"d_kv\": 8,\n"
  "    \"d_ff\": 64, \"rel_buckets\": 32, \"rel_max_distance\": 128, \"max_tokens\": 32,\n"
  "    \"eps\": 1e-6\n"
  "  },\n"
  "  \"dit\": {\n"
  "    \"hidden\": 48, \"depth\": 2, \"heads\": 4, \"head_dim\": 12,\n"
  "    \"patch\": [1, 4, 4], \"in_channels\": 3, \"ffn_hidden\": 192, \"freq_dim\": 64,\n"
  "    \"abs_pos\": \"sincos\",\n"
  "    \"rope_theta\": 10000.0, \"rope_scale\": [1.0, 1.0, 1.0], \"eps\": 1e-6\n"
  "  },\n"
  "  \"sampler\": {\n"
  "    \"type\": \"flow_euler\", \"prediction\": \"flow\", \"steps\": 8, \"guidance\": 4.0,\n"
  "    \"shift\": 1.0, \"train_timesteps\": 1000, \"beta_start\": 0.0001, \"beta_end\": 0.02,\n"
  "    \"beta_schedule\": \"linear\"\n"
  "  },\n"
  "  \"attention\": { \"mode\": \"full\", \"tile_k\": 1, \"plan\": [1, 1], \"block\": 64,\n"
  "                 \"sparsity\": 0.8, \"warmup\": 0.2, \"search_steps\": [0.2, 0.6] }\n"
  "}\n";

/* good_json with `from` replaced by `to` (from must occur), written to a new file. */
static char *
write_variant (const char *file, const char *from, const char *to)
{
  const char *at = from ? strstr (good_json, from) : NULL;
  g_assert_true (from == NULL || at != NULL);
  GString *s = g_string_new_len (good_json, at ? at - good_json : -1);
  if (at != NULL) {
    g_string_append (s, to);
    g_string_append (s, at + strlen (from));
  }
  char *path = g_build_filename (tmpdir, file, NULL);
  g_assert_true (g_file_set_contents (path, s->str, (gssize) s->len, NULL));
  g_string_free (s, TRUE);
  return path;
}

static void
test_good (void)
{
  char *path = write_variant ("good.json", NULL, NULL);
  GError *err = NULL;
  vdit_config *c = vdit_config_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (c->name, ==, "tiny");
  g_assert_cmpint (c->frames, ==, 4);
  g_assert_cmpint (c->height, ==, 16);
  g_assert_cmpfloat (c->fps, ==, 8.0);
  g_assert_cmpint (c->decoder, ==, VDIT_DECODER_IDENTITY);
  g_assert_cmpint (c->text.vocab_size, ==, 128);
  g_assert_cmpint (c->text.rel_max_distance, ==, 128);
  g_assert_cmpfloat (c->text.eps, ==, 1e-6f);
  g_assert_cmpint (c->dit.hidden, ==, 48);
  g_assert_cmpint (c->dit.patch[0], ==, 1);
  g_assert_cmpint (c->dit.patch[2], ==, 4);
  g_assert_cmpfloat (c->dit.rope_theta, ==, 10000.0f);
  g_assert_true (c->dit.abs_pos);
  g_assert_cmpint (c->sampler.type, ==, VDIT_SAMPLER_FLOW_EULER);
  g_assert_cmpint (c->sampler.prediction, ==, VDIT_PRED_FLOW);
  g_assert_cmpint (c->sampler.steps, ==, 8);
  g_assert_cmpfloat (c->sampler.guidance, ==, 4.0f);
  g_assert_false (c->sampler.scaled_linear);
  g_assert_cmpint (c->attention.mode, ==, VDIT_ATTENTION_FULL);
  g_assert_nonnull (c->attention.plan);
  g_assert_cmpint (c->attention.plan[1], ==, 1);
  g_assert_cmpint (c->attention.n_search_steps, ==, 2);
  g_assert_cmpfloat (c->attention.search_steps[1], ==, 0.6f);
  vdit_config_free (c);
  g_free (path);
}

static void
test_defaults (void)
{
  const char *json =
    "{\"format\": \"vdit\", \"version\": 1,"
    " \"video\": {\"frames\": 2, \"height\": 8, \"width\": 8},"
    " \"decoder\": {\"type\": \"identity\"},"
    " \"text_encoder\": {\"vocab_size\": 16, \"d_model\": 8, \"n_layers\": 1, \"n_heads\": 2,"
    "   \"d_kv\": 4, \"d_ff\": 16, \"rel_buckets\": 8, \"rel_max_distance\": 16,"
    "   \"max_tokens\": 8},"
    " \"dit\": {\"hidden\": 12, \"depth\": 3, \"heads\": 2, \"head_dim\": 6, \"patch\": [1, 2, 2],"
    "   \"in_channels\": 3, \"ffn_hidden\": 24, \"freq_dim\": 8},"
    " \"sampler\": {\"type\": \"ddim\"}}";
  GError *err = NULL;
  vdit_config *c = vdit_config_parse (json, -1, "models/small/config.json", &err);
  g_assert_no_error (err);
  g_assert_cmpstr (c->name, ==, "small");
  g_assert_cmpint (c->decoder_channels, ==, 3);
  g_assert_cmpfloat (c->dit.rope_scale[2], ==, 1.0f);
  g_assert_cmpfloat (c->dit.rope_theta, ==, 10000.0f);
  g_assert_cmpfloat (c->dit.eps, ==, 1e-6f);
  g_assert_false (c->dit.abs_pos);
  g_assert_cmpint (c->sampler.prediction, ==, VDIT_PRED_EPSILON);
  g_assert_cmpfloat (c->sampler.shift, ==, 1.0f);
  g_assert_cmpint (c->sampler.train_timesteps, ==, 1000);
  g_assert_cmpint (c->attention.mode, ==, VDIT_ATTENTION_FULL);
  g_assert_null (c->attention.plan);
  g_assert_cmpint (c->attention.tile_k, ==, 1);
  g_assert_cmpint (c->attention.block, ==, 64);
  g_assert_cmpfloat (c->attention.sparsity, ==, 0.8f);
  g_assert_cmpfloat (c->attention.warmup, ==, 0.2f);
  g_assert_cmpint (c->attention.n_search_steps, ==, 2);
  g_assert_cmpfloat (c->attention.search_steps[0], ==, 0.2f);
  vdit_config_free (c);
}

static void
test_save_plan (void)
{
  char *path = write_variant ("plan.json", "\"mode\": \"full\"", "\"mode\": \"tile\"");
  const int plan[2] = { 0, 3 };
  GError *err = NULL;
  g_assert_true (vdit_config_save_plan (path, plan, 2, &err));
  g_assert_no_error (err);
  vdit_config *c = vdit_config_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->attention.plan[0], ==, 0);
  g_assert_cmpint (c->attention.plan[1], ==, 3);
  g_assert_cmpint (c->attention.mode, ==, VDIT_ATTENTION_TILE);
  g_assert_cmpfloat (c->attention.sparsity, ==, 0.8f);
  g_assert_cmpfloat (c->dit.eps, ==, 1e-6f);
  g_assert_cmpfloat (c->sampler.beta_start, ==, 0.0001f);
  g_assert_cmpfloat (c->sampler.guidance, ==, 4.0f);
  g_assert_cmpstr (c->name, ==, "tiny");
  vdit_config_free (c);
  /* numbers keep their short form and doubles stay doubles */
  char *text;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  if (g_test_verbose ())
    g_test_message ("%s", text);
  g_assert_nonnull (strstr (text, "\"plan\": [0, 3]"));
  g_assert_nonnull (strstr (text, "\"sparsity\": 0.8"));
  g_assert_nonnull (strstr (text, "\"guidance\": 4.0"));
  g_assert_nonnull (strstr (text, "\"eps\": 1e-06"));
  g_assert_true (g_str_has_prefix (text, "{\n  \"format\": \"vdit\""));
  g_free (text);
  g_free (path);
}

static void
test_save_plan_no_attention (void)
{
  const char *att = strstr (good_json, ",\n  \"attention\"");
  char *json = g_strdup_printf ("%.*s\n}\n", (int) (att - good_json), good_json);
  char *path = g_build_filename (tmpdir, "noatt.json", NULL);
  g_assert_true (g_file_set_contents (path, json, -1, NULL));
  const int plan[2] = { 2, 1 };
  g_assert_true (vdit_config_save_plan (path, plan, 2, NULL));
  vdit_config *c = vdit_config_load (path, NULL);
  g_assert_nonnull (c);
  g_assert_cmpint (c->attention.plan[0], ==, 2);
  g_assert_cmpint (c->attention.mode, ==, VDIT_ATTENTION_FULL);
  vdit_config_free (c);
  g_free (path);
  g_free (json);
}

static void
test_save_plan_wrong_depth (void)
{
  char *path = write_variant ("plan3.json", NULL, NULL);
  const int plan[3] = { 1, 1, 1 };
  GError *err = NULL;
  g_assert_false (vdit_config_save_plan (path, plan, 3, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_CONFIG, path, "3 entries", "dit.depth = 2",
                    NULL);
  g_error_free (err);
  g_free (path);
}

static void
test_missing_file (void)
{
  char *path = g_build_filename (tmpdir, "absent.json", NULL);
  GError *err = NULL;
  g_assert_null (vdit_config_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_MISSING, path, NULL);
  g_error_free (err);
  g_free (path);
}

static void
test_not_json (void)
{
  GError *err = NULL;
  g_assert_null (vdit_config_parse ("{\"format\": ", -1, "broken/config.json", &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "broken/config.json", "not valid JSON",
                    NULL);
  g_clear_error (&err);
  g_assert_null (vdit_config_parse ("[1, 2]", -1, "broken/config.json", &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "broken/config.json",
                    "not a JSON object", NULL);
  g_error_free (err);
}

/* json-glib quotes the offending token, and a string token may hold a raw line break:
 * the error must still be one line (found by fuzz/fuzz_json). */
static void
test_error_one_line (void)
{
  GError *err = NULL;
  g_assert_null (vdit_config_parse ("{\n  \"name\": \"tiny\",\n  \"vid4,\n    \"x\": 1\n}\n",
                                    -1, "broken/config.json", &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "broken/config.json", "not valid JSON",
                    "\\n", NULL);
  g_assert_null (strchr (err->message, '\n'));
  g_assert_null (strchr (err->message, '\r'));
  g_clear_error (&err);

  /* a repeated key quoted in the message, holding a raw line break */
  g_assert_null (vdit_config_parse ("{\"a\nb\": 1, \"a\nb\": 2}", -1, "broken/config.json", &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "broken/config.json", "a\\nb", NULL);
  g_assert_null (strchr (err->message, '\n'));
  g_error_free (err);
}

/* One bad value: `from` in the good config becomes `to`; the message must hold `key`
 * and `value` (and `why`, when given). */
typedef struct {
  const char *test, *from, *to, *key, *value, *why;
} bad_case;

static const bad_case bad_cases[] = {
  { "format", "\"format\": \"vdit\"", "\"format\": \"vdit2\"", "format", "\"vdit2\"" },
  { "version", "\"version\": 1", "\"version\": 2", "version", "2" },
  { "frames-zero", "\"frames\": 4", "\"frames\": 0", "video.frames", "0" },
  { "frames-patch", "\"patch\": [1, 4, 4]", "\"patch\": [3, 4, 4]", "video.frames", "4" },
  { "height-patch", "\"height\": 16", "\"height\": 18", "video.height", "18" },
  { "width-patch", "\"width\": 16", "\"width\": 10", "video.width", "10" },
  { "fps", "\"fps\": 8", "\"fps\": 0", "video.fps", "0" },
  { "width-max", "\"width\": 16", "\"width\": 1073741824", "video.width", "1073741824",
    "at most 8192" },
  { "height-max", "\"height\": 16", "\"height\": 1048576", "video.height", "1048576",
    "at most 8192" },
  { "frames-max", "\"frames\": 4", "\"frames\": 4097", "video.frames", "4097",
    "at most 4096" },
  { "fps-huge", "\"fps\": 8", "\"fps\": 2147483648000", "video.fps", "2.147483648e+12",
    "[0.1, 1000]" },
  { "fps-inf", "\"fps\": 8", "\"fps\": 1e999", "video.fps", "inf", "finite" },
  { "fps-tiny", "\"fps\": 8", "\"fps\": 0.001", "video.fps", "0.001", "[0.1, 1000]" },
  { "decoder-type", "\"identity\"", "\"vae\"", "decoder.type", "\"vae\"" },
  { "decoder-channels", "\"channels\": 3", "\"channels\": 4", "decoder.channels", "4" },
  { "in-channels", "\"in_channels\": 3", "\"in_channels\": 4", "dit.in_channels", "4" },
  { "vocab-size", "\"vocab_size\": 128", "\"vocab_size\": 1", "text_encoder.vocab_size", "1" },
  { "n-heads", "\"n_heads\": 4", "\"n_heads\": 0", "text_encoder.n_heads", "0" },
  { "d-kv", "\"d_kv\": 8", "\"d_kv\": -8", "text_encoder.d_kv", "-8" },
  { "rel-buckets", "\"rel_buckets\": 32", "\"rel_buckets\": 2", "text_encoder.rel_buckets", "2" },
  { "rel-max-distance", "\"rel_max_distance\": 128", "\"rel_max_distance\": 8",
    "text_encoder.rel_max_distance", "8" },
  { "max-tokens", "\"max_tokens\": 32", "\"max_tokens\": 0", "text_encoder.max_tokens", "0" },
  { "text-eps", "\"eps\": 1e-6\n  },\n  \"dit\"", "\"eps\": -1\n  },\n  \"dit\"",
    "text_encoder.eps", "-1" },
  { "head-dim", "\"head_dim\": 12", "\"head_dim\": 10", "dit.head_dim", "10" },
  { "hidden", "\"hidden\": 48", "\"hidden\": 60", "dit.hidden", "60" },
  { "depth", "\"depth\": 2", "\"depth\": 0", "dit.depth", "0" },
  { "patch-length", "\"patch\": [1, 4, 4]", "\"patch\": [1, 4]", "dit.patch", "[1,4]" },
  { "patch-entry", "\"patch\": [1, 4, 4]", "\"patch\": [1, 0, 4]", "dit.patch[1]", "0" },
  { "freq-dim", "\"freq_dim\": 64", "\"freq_dim\": 63", "dit.freq_dim", "63" },
  { "rope-theta", "\"rope_theta\": 10000.0", "\"rope_theta\": 0", "dit.rope_theta", "0" },
  { "abs-pos", "\"abs_pos\": \"sincos\"", "\"abs_pos\": \"learnt\"", "dit.abs_pos",
    "\"learnt\"" },
  { "rope-scale", "\"rope_scale\": [1.0, 1.0, 1.0]", "\"rope_scale\": [1.0, -2.0, 1.0]",
    "dit.rope_scale[1]", "-2" },
  { "dit-eps", "\"eps\": 1e-6\n  },\n  \"sampler\"", "\"eps\": 0\n  },\n  \"sampler\"",
    "dit.eps", "0" },
  { "not-integer", "\"ffn_hidden\": 192", "\"ffn_hidden\": 19.5", "dit.ffn_hidden", "19.5" },
  { "not-number", "\"ffn_hidden\": 192", "\"ffn_hidden\": \"big\"", "dit.ffn_hidden", "\"big\"" },
  { "missing-key", "\"hidden\": 48, ", "", "dit.hidden", "missing" },
  { "sampler-type", "\"flow_euler\"", "\"dpm\"", "sampler.type", "\"dpm\"" },
  { "flow-prediction", "\"prediction\": \"flow\"", "\"prediction\": \"epsilon\"",
    "sampler.prediction", "\"epsilon\"" },
  { "ddim-prediction", "\"type\": \"flow_euler\"", "\"type\": \"ddim\"", "sampler.prediction",
    "\"flow\"" },
  { "beta-schedule", "\"linear\"", "\"cosine\"", "sampler.beta_schedule", "\"cosine\"" },
  { "steps", "\"steps\": 8", "\"steps\": 0", "sampler.steps", "0" },
  { "steps-max", "\"steps\": 8", "\"steps\": 2147483647", "sampler.steps", "2147483647",
    "at most 10000" },
  { "steps-max-plus-one", "\"steps\": 8", "\"steps\": 10001", "sampler.steps", "10001",
    "at most 10000" },
  { "guidance", "\"guidance\": 4.0", "\"guidance\": -1", "sampler.guidance", "-1" },
  { "shift", "\"shift\": 1.0", "\"shift\": 0", "sampler.shift", "0" },
  { "beta-start", "\"beta_start\": 0.0001", "\"beta_start\": 0", "sampler.beta_start", "0" },
  { "beta-end", "\"beta_end\": 0.02", "\"beta_end\": 0.00001", "sampler.beta_end", "1e-05" },
  { "train-timesteps", "\"train_timesteps\": 1000", "\"train_timesteps\": 0",
    "sampler.train_timesteps", "0" },
  { "train-timesteps-max", "\"train_timesteps\": 1000", "\"train_timesteps\": 2147483647",
    "sampler.train_timesteps", "2147483647", "at most 100000" },
  { "attention-mode", "\"mode\": \"full\"", "\"mode\": \"sparse\"", "attention.mode",
    "\"sparse\"" },
  { "plan-length", "\"plan\": [1, 1]", "\"plan\": [1, 1, 1]", "attention.plan", "[1,1,1]" },
  { "plan-entry", "\"plan\": [1, 1]", "\"plan\": [1, -1]", "attention.plan[1]", "-1" },
  { "tile-k", "\"tile_k\": 1", "\"tile_k\": -1", "attention.tile_k", "-1" },
  { "block", "\"block\": 64", "\"block\": 0", "attention.block", "0" },
  { "block-max", "\"block\": 64", "\"block\": 2147483647", "attention.block", "2147483647",
    "at most 4096" },
  { "sparsity", "\"sparsity\": 0.8", "\"sparsity\": 1.5", "attention.sparsity", "1.5" },
  { "sparsity-one", "\"sparsity\": 0.8", "\"sparsity\": 1", "attention.sparsity", "1" },
  { "warmup", "\"warmup\": 0.2", "\"warmup\": 2", "attention.warmup", "2" },
  { "search-steps", "\"search_steps\": [0.2, 0.6]", "\"search_steps\": [0.2, 1.5]",
    "attention.search_steps[1]", "1.5" },
  { "search-steps-empty", "\"search_steps\": [0.2, 0.6]", "\"search_steps\": []",
    "attention.search_steps", "[]" },
  { "section-type", "\"decoder\": { \"type\": \"identity\", \"channels\": 3 }",
    "\"decoder\": 3", "decoder", "3" },
};

static void
test_bad (gconstpointer data)
{
  const bad_case *bc = data;
  char *file = g_strdup_printf ("%s.json", bc->test);
  char *path = write_variant (file, bc->from, bc->to);
  GError *err = NULL;
  vdit_config *c = vdit_config_load (path, &err);
  g_assert_null (c);
  char *key = g_strdup_printf (" %s ", bc->key);
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_CONFIG, path, key, bc->value, bc->why, NULL);
  g_error_free (err);
  g_free (key);
  g_free (path);
  g_free (file);
}

static void
test_ddim_steps (void)
{
  char *path = write_variant ("ddim-steps.json",
                              "\"type\": \"flow_euler\", \"prediction\": \"flow\", \"steps\": 8",
                              "\"type\": \"ddim\", \"prediction\": \"v\", \"steps\": 2000");
  GError *err = NULL;
  g_assert_null (vdit_config_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_CONFIG, path, "sampler.steps", "2000",
                    "train_timesteps", NULL);
  g_error_free (err);
  g_free (path);
}

/* The largest values every bound admits still load. */
static void
test_limits_inclusive (void)
{
  GString *json = g_string_new (good_json);
  static const char *const edits[][2] = {
    { "\"frames\": 4", "\"frames\": 4096" },
    { "\"height\": 16", "\"height\": 8192" },
    { "\"width\": 16", "\"width\": 8192" },
    { "\"fps\": 8", "\"fps\": 1000" },
    { "\"type\": \"flow_euler\", \"prediction\": \"flow\", \"steps\": 8",
      "\"type\": \"ddim\", \"prediction\": \"v\", \"steps\": 10000" },
    { "\"train_timesteps\": 1000", "\"train_timesteps\": 100000" },
    { "\"block\": 64", "\"block\": 4096" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (edits); i++)
    g_assert_cmpuint (g_string_replace (json, edits[i][0], edits[i][1], 1), ==, 1);
  GError *err = NULL;
  vdit_config *c = vdit_config_parse (json->str, -1, "max/config.json", &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->frames, ==, 4096);
  g_assert_cmpint (c->height, ==, 8192);
  g_assert_cmpint (c->width, ==, 8192);
  g_assert_cmpfloat (c->fps, ==, 1000.0);
  g_assert_cmpint (c->sampler.steps, ==, 10000);
  g_assert_cmpint (c->sampler.train_timesteps, ==, 100000);
  g_assert_cmpint (c->attention.block, ==, 4096);
  vdit_config_free (c);
  /* and the smallest fps */
  g_assert_cmpuint (g_string_replace (json, "\"fps\": 1000", "\"fps\": 0.1", 1), ==, 1);
  c = vdit_config_parse (json->str, -1, "max/config.json", &err);
  g_assert_no_error (err);
  g_assert_cmpfloat (c->fps, ==, 0.1);
  vdit_config_free (c);
  g_string_free (json, TRUE);
}

/* good_json with `extra` as the value of an unknown top-level key. */
static char *
with_extra (const char *extra)
{
  const char *brace = strrchr (good_json, '}');
  return g_strdup_printf ("%.*s, \"extra\": %s}", (int) (brace - good_json), good_json, extra);
}

/* 200,000 nested arrays (400 KB) overflowed the stack of json-glib's recursive parser. */
static void
test_deep_nesting (void)
{
  if (!run_in_subprocess ())
    return;
  const int depth = 200000;
  char *deep = g_malloc (2 * depth + 1);
  memset (deep, '[', depth);
  memset (deep + depth, ']', depth);
  deep[2 * depth] = '\0';
  char *json = with_extra (deep);
  char *path = g_build_filename (tmpdir, "deep.json", NULL);
  g_assert_true (g_file_set_contents (path, json, -1, NULL));
  GError *err = NULL;
  g_assert_null (vdit_config_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, "nested deeper than 64 levels",
                    NULL);
  g_clear_error (&err);
  /* objects count as well as arrays */
  GString *objs = g_string_new (NULL);
  for (int i = 0; i < 100; i++)
    g_string_append (objs, "{\"a\":");
  g_string_append (objs, "1");
  for (int i = 0; i < 100; i++)
    g_string_append_c (objs, '}');
  g_free (json);
  json = with_extra (objs->str);
  g_assert_null (vdit_config_parse (json, -1, "objs/config.json", &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "objs/config.json",
                    "nested deeper than 64 levels", NULL);
  g_clear_error (&err);
  g_string_free (objs, TRUE);
  g_free (json);
  /* json-glib takes comments and single-quoted strings: a quote in either must not hide
   * the brackets after it from the count */
  static const char *const hiding[] = { "/* \" */ \"x\": ", "'a\"': ", "\"\\u12\": " };
  for (guint i = 0; i < G_N_ELEMENTS (hiding); i++) {
    const char *brace = strrchr (good_json, '}');
    json = g_strdup_printf ("%.*s, %s%s}", (int) (brace - good_json), good_json, hiding[i],
                            deep);
    g_assert_null (vdit_config_parse (json, -1, "hidden/config.json", &err));
    test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "hidden/config.json",
                      "not valid JSON", NULL);
    g_clear_error (&err);
    g_free (json);
  }
  g_free (path);
  g_free (deep);
}

/* 64 levels (the top-level object is the first) load; brackets inside strings, escaped
 * quotes included, are not nesting. */
static void
test_nesting_limit (void)
{
  GString *ok = g_string_new (NULL);
  for (int i = 0; i < 63; i++)
    g_string_append_c (ok, '[');
  g_string_append (ok, "\"[[[{{{\\\"[[[{{{\\u005b\\\\\"");
  for (int i = 0; i < 63; i++)
    g_string_append_c (ok, ']');
  char *json = with_extra (ok->str);
  GError *err = NULL;
  vdit_config *c = vdit_config_parse (json, -1, "limit/config.json", &err);
  g_assert_no_error (err);
  vdit_config_free (c);
  /* with a byte-order mark, which json-glib skips */
  char *bom = g_strconcat ("\xef\xbb\xbf", json, NULL);
  c = vdit_config_parse (bom, -1, "limit/config.json", &err);
  g_assert_no_error (err);
  vdit_config_free (c);
  g_free (bom);
  g_free (json);
  g_string_insert_c (ok, 0, '[');
  g_string_append_c (ok, ']');
  json = with_extra (ok->str);
  g_assert_null (vdit_config_parse (json, -1, "limit/config.json", &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "limit/config.json",
                    "nested deeper than 64 levels", NULL);
  g_clear_error (&err);
  g_free (json);
  g_string_free (ok, TRUE);
}

/* json-glib keeps the last of two equal keys; the loader refuses them, as the
 * safetensors reader does. */
static void
test_duplicate_key (void)
{
  static const char *const cases[][3] = {
    { "\"hidden\": 48, ", "\"hidden\": 48, \"hidden\": 96, ", "'hidden'" },
    { "\"version\": 1,", "\"version\": 1, \"version\": 1,", "'version'" },
    { "\"decoder\": {", "\"decoder\": {}, \"decoder\": {", "'decoder'" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    char *path = write_variant ("dup.json", cases[i][0], cases[i][1]);
    GError *err = NULL;
    g_assert_null (vdit_config_load (path, &err));
    test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, cases[i][2], "twice", NULL);
    g_error_free (err);
    g_free (path);
  }
}

/* A FIFO named config.json blocked open() until a writer came; now it is refused. */
static void
test_fifo (void)
{
  if (!run_in_subprocess ())
    return;
  char *path = g_build_filename (tmpdir, "fifo.json", NULL);
  g_assert_cmpint (mkfifo (path, 0600), ==, 0);
  GError *err = NULL;
  g_assert_null (vdit_config_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, "not a regular file", NULL);
  g_error_free (err);
  g_remove (path);
  g_free (path);
}

/* A directory in place of the file. */
static void
test_directory (void)
{
  char *path = g_build_filename (tmpdir, "dir.json", NULL);
  g_assert_cmpint (g_mkdir (path, 0700), ==, 0);
  GError *err = NULL;
  g_assert_null (vdit_config_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, "not a regular file", NULL);
  g_error_free (err);
  g_rmdir (path);
  g_free (path);
}

/* A config.json larger than any config (a sparse file: no disk used) is refused before
 * it is read. */
static void
test_too_large (void)
{
  char *path = g_build_filename (tmpdir, "huge.json", NULL);
  int fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, (off_t) 4 << 30), ==, 0);
  close (fd);
  GError *err = NULL;
  g_assert_null (vdit_config_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, "4294967296 bytes",
                    "at most 16777216", NULL);
  g_error_free (err);
  g_remove (path);
  g_free (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("vdit-config-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/config/good", test_good);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/save-plan", test_save_plan);
  g_test_add_func ("/config/save-plan-no-attention", test_save_plan_no_attention);
  g_test_add_func ("/config/bad/save-plan-depth", test_save_plan_wrong_depth);
  g_test_add_func ("/config/bad/missing-file", test_missing_file);
  g_test_add_func ("/config/bad/not-json", test_not_json);
  g_test_add_func ("/config/bad/error-one-line", test_error_one_line);
  g_test_add_func ("/config/bad/ddim-steps", test_ddim_steps);
  g_test_add_func ("/config/limits-inclusive", test_limits_inclusive);
  g_test_add_func ("/config/nesting-limit", test_nesting_limit);
  g_test_add_func ("/config/bad/deep-nesting", test_deep_nesting);
  g_test_add_func ("/config/bad/duplicate-key", test_duplicate_key);
  g_test_add_func ("/config/bad/fifo", test_fifo);
  g_test_add_func ("/config/bad/directory", test_directory);
  g_test_add_func ("/config/bad/too-large", test_too_large);
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++) {
    char *name = g_strdup_printf ("/config/bad/%s", bad_cases[i].test);
    g_test_add_data_func (name, &bad_cases[i], test_bad);
    g_free (name);
  }
  int rc = g_test_run ();
  test_rmdir (tmpdir);
  g_free (tmpdir);
  return rc;
}
