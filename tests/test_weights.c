/* The weight table: the expected list, loading from several files, one case per kind of
 * mismatch (missing, wrong shape, extra, duplicate, no file), FIFOs in the model
 * directory, and random weights. */
#include "test_trap.h"
#include "st_writer.h"
#include "backend_util.h"
#include "weights.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir;
static vdit_config *cfg;

static const char tiny_json[] =
  "{\"format\": \"vdit\", \"version\": 1, \"name\": \"t\","
  " \"video\": {\"frames\": 2, \"height\": 4, \"width\": 4},"
  " \"decoder\": {\"type\": \"identity\"},"
  " \"text_encoder\": {\"vocab_size\": 16, \"d_model\": 8, \"n_layers\": 2, \"n_heads\": 2,"
  "   \"d_kv\": 3, \"d_ff\": 10, \"rel_buckets\": 8, \"rel_max_distance\": 16, \"max_tokens\": 8},"
  " \"dit\": {\"hidden\": 12, \"depth\": 2, \"heads\": 2, \"head_dim\": 6, \"patch\": [1, 2, 2],"
  "   \"in_channels\": 3, \"ffn_hidden\": 20, \"freq_dim\": 8},"
  " \"sampler\": {\"type\": \"flow_euler\"}}";

/* How write_model departs from the config. */
typedef struct {
  const char *skip;    /* leave this tensor out */
  const char *reshape; /* write this one transposed/flattened */
  const char *extra;   /* add a tensor of this name */
  const char *dup;     /* write this one into both files */
  gboolean bf16;       /* store 1-D tensors as BF16 */
} variant;

static void
add_tensor (st_writer *w, const vdit_tensor_spec *s, const variant *v, float start)
{
  int64_t shape[5];
  int ndim = s->ndim;
  memcpy (shape, s->shape, sizeof shape);
  if (v->reshape && g_str_equal (s->name, v->reshape)) {
    shape[0] = s->shape[0] + 1; /* one row too many */
  }
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  if (v->bf16 && ndim == 1) {
    uint16_t *h = g_new (uint16_t, n);
    for (int64_t i = 0; i < n; i++)
      h[i] = 0x3f80 + i % 128; /* 1 + (i mod 128)/128, exact in bf16 */
    st_writer_add (w, s->name, "BF16", ndim, shape, h, (size_t) n * 2);
    g_free (h);
  } else {
    st_writer_add_f32 (w, s->name, ndim, shape, start);
  }
}

/* The config's tensors, alternating between a.safetensors and b.safetensors (values
 * 100·i, 100·i + 1, …) in a new directory under tmpdir. */
static char *
write_model (const char *name, const variant *v)
{
  char *dir = g_build_filename (tmpdir, name, NULL);
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  st_writer *w[2] = { st_writer_new (), st_writer_new () };
  GPtrArray *specs = vdit_weights_expected (cfg);
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *s = g_ptr_array_index (specs, i);
    if (v->skip && g_str_equal (s->name, v->skip))
      continue;
    add_tensor (w[i % 2], s, v, 100.0f * (float) i);
    if (v->dup && g_str_equal (s->name, v->dup))
      add_tensor (w[(i + 1) % 2], s, v, 0.0f);
  }
  if (v->extra) {
    int64_t shape[] = { 2 };
    st_writer_add_f32 (w[1], v->extra, 1, shape, 0.0f);
  }
  const char *files[2] = { "a.safetensors", "b.safetensors" };
  for (int f = 0; f < 2; f++) {
    char *path = g_build_filename (dir, files[f], NULL);
    st_writer_save (w[f], path);
    st_writer_free (w[f]);
    g_free (path);
  }
  g_ptr_array_unref (specs);
  return dir;
}

static int64_t
spec_elements (const vdit_tensor_spec *s)
{
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++)
    n *= s->shape[i];
  return n;
}

static void
test_expected (void)
{
  GPtrArray *specs = vdit_weights_expected (cfg);
  const int L = cfg->text.n_layers, depth = cfg->dit.depth;
  /* text: shared, per layer 2 norms + q k v o + wi_0 wi_1 wo, the bias table, final norm;
   * DiT: patch embed 2, timestep 4, adaln 2, caption 4, per block 1 + 8·2 + 4, final 1 + 2 */
  g_assert_cmpuint (specs->len, ==, 1 + 9 * L + 1 + 1 + 2 + 4 + 2 + 4 + 21 * depth + 3);
  GHashTable *names = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *s = g_ptr_array_index (specs, i);
    g_assert_false (g_hash_table_contains (names, s->name));
    g_hash_table_add (names, s->name);
  }
  const vdit_tensor_spec *first = g_ptr_array_index (specs, 0);
  g_assert_cmpstr (first->name, ==, "text_encoder.shared.weight");
  g_assert_cmpint (first->shape[0], ==, 16);
  g_assert_cmpint (first->shape[1], ==, 8);
  const char *must[] = {
    "text_encoder.encoder.block.1.layer.0.SelfAttention.q.weight",
    "text_encoder.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
    "text_encoder.encoder.block.1.layer.1.DenseReluDense.wo.weight",
    "text_encoder.encoder.final_layer_norm.weight",
    "pos_embed.proj.weight", "adaln_single.emb.timestep_embedder.linear_1.bias",
    "adaln_single.linear.weight", "caption_projection.linear_2.bias",
    "transformer_blocks.1.scale_shift_table", "transformer_blocks.0.attn2.to_out.0.weight",
    "transformer_blocks.1.ff.net.0.proj.bias", "scale_shift_table", "proj_out.weight",
  };
  for (guint i = 0; i < G_N_ELEMENTS (must); i++)
    g_assert_true (g_hash_table_contains (names, must[i]));
  g_assert_false (g_hash_table_contains (
    names, "text_encoder.encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *s = g_ptr_array_index (specs, i);
    if (g_str_equal (s->name, "pos_embed.proj.weight")) {
      g_assert_cmpint (s->ndim, ==, 5);
      g_assert_cmpint (s->shape[1], ==, 3);
      g_assert_cmpint (s->shape[4], ==, 2);
    } else if (g_str_equal (s->name, "proj_out.weight")) {
      g_assert_cmpint (s->shape[0], ==, 12); /* P·C = 4·3 */
    } else if (g_str_has_suffix (s->name, "block.0.layer.0.SelfAttention.o.weight")) {
      g_assert_cmpint (s->shape[0], ==, 8);
      g_assert_cmpint (s->shape[1], ==, 6); /* n_heads · d_kv */
    } else if (g_str_equal (s->name, "adaln_single.linear.weight")) {
      g_assert_cmpint (s->shape[0], ==, 72);
    }
  }
  g_hash_table_unref (names);
  g_ptr_array_unref (specs);
}

static void
test_load_good (void)
{
  variant v = { .bf16 = TRUE };
  char *dir = write_model ("good", &v);
  GError *err = NULL;
  vdit_weights *w = vdit_weights_load (dir, cfg, &err);
  g_assert_no_error (err);
  GPtrArray *specs = vdit_weights_expected (cfg);
  int64_t total = 0;
  int n1d = 0;
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *s = g_ptr_array_index (specs, i);
    total += spec_elements (s);
    n1d += s->ndim == 1;
    g_assert_nonnull (vdit_weights_get (w, s->name));
  }
  g_assert_cmpint (vdit_weights_n_params (w), ==, total);
  char *want = g_strdup_printf ("f32 (%d), bf16 (%d)", specs->len - n1d, n1d);
  if (n1d > (int) specs->len - n1d)
    want = (g_free (want), g_strdup_printf ("bf16 (%d), f32 (%d)", n1d, specs->len - n1d));
  char *summary = vdit_weights_dtype_summary (w);
  g_assert_cmpstr (summary, ==, want);
  /* tensor 1 (layer norm, 1-D: bf16 ones) and tensor 2 (q, f32 from 200) */
  const vdit_tensor_spec *ln = g_ptr_array_index (specs, 1), *q = g_ptr_array_index (specs, 2);
  float buf[64];
  g_assert_true (vdit_weights_read_f32 (w, ln->name, buf, G_N_ELEMENTS (buf), &err));
  g_assert_cmpfloat (buf[0], ==, 1.0f);
  g_assert_cmpfloat (buf[7], ==, 1.0f + 7.0f / 128.0f);
  g_assert_true (vdit_weights_read_f32 (w, q->name, buf, G_N_ELEMENTS (buf), &err));
  g_assert_cmpfloat (buf[0], ==, 200.0f);
  g_assert_cmpfloat (buf[5], ==, 205.0f);
  g_assert_false (vdit_weights_read_f32 (w, "nope", buf, 1, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_MISSING, "'nope'", NULL);
  g_clear_error (&err);
  g_assert_false (vdit_weights_read_f32 (w, q->name, buf, 2, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_SHAPE, q->name, NULL);
  g_clear_error (&err);
  g_free (summary);
  g_free (want);
  g_ptr_array_unref (specs);
  vdit_weights_free (w);
  g_free (dir);
}

/* Uploads to the CPU backend: bf16 tensors go as stored (one, or gathered), a mix of bf16
 * and f32 through f32; every way gives the values vdit_weights_read_f32 gives. */
static void
test_upload (void)
{
  variant v = { .bf16 = TRUE };
  g_autofree char *dir = write_model ("upload", &v);
  GError *err = NULL;
  vdit_weights *w = vdit_weights_load (dir, cfg, &err);
  g_assert_no_error (err);
  vdit_backend be;
  g_assert_true (vdit_backend_cpu_init (&be, 1, &err));
  GPtrArray *specs = vdit_weights_expected (cfg);
  const char *one_d[2] = { NULL, NULL }, *two_d = NULL;
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *s = g_ptr_array_index (specs, i);
    if (s->ndim == 1 && !one_d[1])
      one_d[one_d[0] ? 1 : 0] = s->name;
    else if (s->ndim == 2 && !two_d)
      two_d = s->name;
  }
  g_assert_nonnull (one_d[1]);
  g_assert_nonnull (two_d);
  const char *const cases[][2] = { { one_d[0], NULL }, { one_d[0], one_d[1] },
                                   { one_d[1], two_d } };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    const int n_names = cases[c][1] ? 2 : 1;
    size_t total = 0;
    for (int i = 0; i < n_names; i++)
      total += vdit_weights_get (w, cases[c][i])->n_elements;
    float *want = g_new (float, total), *got = g_new (float, total);
    size_t off = 0;
    for (int i = 0; i < n_names; i++) {
      const size_t n = vdit_weights_get (w, cases[c][i])->n_elements;
      g_assert_true (vdit_weights_read_f32 (w, cases[c][i], want + off, n, &err));
      off += n;
    }
    void *buf = vdit_be_upload_concat (&be, w, cases[c], n_names, &err);
    g_assert_no_error (err);
    g_assert_true (be.iface->download (be.context, got, buf, total, VDIT_ELEM_ACT, &err));
    g_assert_cmpmem (got, total * sizeof (float), want, total * sizeof (float));
    g_assert_cmpfloat (got[1], ==, 1.0f + 1.0f / 128.0f);
    vdit_be_clear (&be, &buf);
    g_free (want);
    g_free (got);
  }
  g_ptr_array_unref (specs);
  vdit_backend_free (&be);
  vdit_weights_free (w);
}

/* Loads a variant and checks the error names `what`. */
static void
expect_load_error (const char *name, const variant *v, int code, const char *what,
                   const char *also)
{
  char *dir = write_model (name, v);
  GError *err = NULL;
  g_assert_null (vdit_weights_load (dir, cfg, &err));
  test_check_error (err, VDIT_ERROR, code, what, also, NULL);
  g_error_free (err);
  g_free (dir);
}

static void
test_missing_tensor (void)
{
  variant v = { .skip = "transformer_blocks.1.attn2.to_k.bias" };
  expect_load_error ("missing", &v, VDIT_ERROR_MISSING, "'transformer_blocks.1.attn2.to_k.bias'",
                     "[12]");
}

static void
test_wrong_shape (void)
{
  variant v = { .reshape = "caption_projection.linear_1.weight" };
  expect_load_error ("shape", &v, VDIT_ERROR_SHAPE, "'caption_projection.linear_1.weight'",
                     "shape [13, 8], expected [12, 8]");
}

static void
test_extra_tensor (void)
{
  variant v = { .extra = "transformer_blocks.2.attn1.to_q.weight" };
  expect_load_error ("extra", &v, VDIT_ERROR_SHAPE, "'transformer_blocks.2.attn1.to_q.weight'",
                     "b.safetensors");
}

static void
test_duplicate_tensor (void)
{
  variant v = { .dup = "scale_shift_table" };
  expect_load_error ("dup", &v, VDIT_ERROR_FORMAT, "'scale_shift_table'", "a.safetensors");
}

static void
test_no_files (void)
{
  char *dir = g_build_filename (tmpdir, "nofiles", NULL);
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  GError *err = NULL;
  g_assert_null (vdit_weights_load (dir, cfg, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_MISSING, dir, "no .safetensors file", NULL);
  g_error_free (err);
  g_rmdir (dir);
  g_free (dir);
}

static void
test_no_dir (void)
{
  char *dir = g_build_filename (tmpdir, "absent", NULL);
  GError *err = NULL;
  g_assert_null (vdit_weights_load (dir, cfg, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_MISSING, dir, NULL);
  g_error_free (err);
  g_free (dir);
}

static void
test_bad_file (void)
{
  variant v = { 0 };
  char *dir = write_model ("badfile", &v);
  char *path = g_build_filename (dir, "c.safetensors", NULL);
  g_assert_true (g_file_set_contents (path, "abc", 3, NULL));
  GError *err = NULL;
  g_assert_null (vdit_weights_load (dir, cfg, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, "c.safetensors", NULL);
  g_error_free (err);
  g_free (path);
  g_free (dir);
}

static void
test_random (void)
{
  GError *err = NULL;
  vdit_weights *a = vdit_weights_new_random (cfg, 7, &err);
  vdit_weights *b = vdit_weights_new_random (cfg, 7, NULL);
  vdit_weights *c = vdit_weights_new_random (cfg, 8, NULL);
  g_assert_no_error (err);
  GPtrArray *specs = vdit_weights_expected (cfg);
  int64_t total = 0;
  for (guint i = 0; i < specs->len; i++) {
    const vdit_tensor_spec *s = g_ptr_array_index (specs, i);
    const vdit_tensor_view *ta = vdit_weights_get (a, s->name), *tb = vdit_weights_get (b, s->name),
                           *tc = vdit_weights_get (c, s->name);
    g_assert_nonnull (ta);
    g_assert_cmpint (ta->n_elements, ==, spec_elements (s));
    g_assert_cmpint (ta->dtype, ==, VDIT_DTYPE_F32);
    const float *va = ta->data;
    g_assert_cmpmem (va, ta->n_elements * 4, tb->data, tb->n_elements * 4);
    if (g_str_has_suffix (s->name, "layer_norm.weight"))
      g_assert_cmpfloat (va[0], ==, 1.0f);
    else if (g_str_has_suffix (s->name, ".bias"))
      g_assert_cmpfloat (va[0], ==, 0.0f);
    else
      g_assert_true (memcmp (va, tc->data, ta->n_elements * 4) != 0);
    total += ta->n_elements;
  }
  g_assert_cmpint (vdit_weights_n_params (a), ==, total);
  char *summary = vdit_weights_dtype_summary (a);
  char *want = g_strdup_printf ("f32 (%u)", specs->len);
  g_assert_cmpstr (summary, ==, want);
  g_free (want);
  g_free (summary);
  g_ptr_array_unref (specs);
  vdit_weights_free (a);
  vdit_weights_free (b);
  vdit_weights_free (c);
}

/* N(0, 0.02²): the mean and spread of a larger tensor. */
static void
test_random_stats (void)
{
  vdit_weights *w = vdit_weights_new_random (cfg, 1, NULL);
  const vdit_tensor_view *t = vdit_weights_get (w, "text_encoder.shared.weight");
  const vdit_tensor_view *ff = vdit_weights_get (w, "transformer_blocks.0.ff.net.0.proj.weight");
  double sum = 0, sq = 0;
  int64_t n = 0;
  const vdit_tensor_view *views[] = { t, ff };
  for (int k = 0; k < 2; k++) {
    const float *v = views[k]->data;
    for (int64_t i = 0; i < views[k]->n_elements; i++, n++) {
      sum += v[i];
      sq += (double) v[i] * v[i];
    }
  }
  double mean = sum / n, sd = sqrt (sq / n - mean * mean);
  g_assert_cmpfloat (fabs (mean), <, 0.004);
  g_assert_cmpfloat (fabs (sd - 0.02), <, 0.003);
  vdit_weights_free (w);
}

/* The committed tiny model: its config and weights agree. */
static void
test_tiny_model (void)
{
  const char *root = g_getenv ("VDIT_SOURCE_ROOT");
  char *dir = g_build_filename (root ? root : ".", "models", "tiny", NULL);
  char *config = g_build_filename (dir, "config.json", NULL);
  if (!g_file_test (config, G_FILE_TEST_EXISTS)) {
    g_test_skip ("models/tiny is not there");
  } else {
    GError *err = NULL;
    vdit_config *c = vdit_config_load (config, &err);
    g_assert_no_error (err);
    vdit_weights *w = vdit_weights_load (dir, c, &err);
    g_assert_no_error (err);
    GPtrArray *specs = vdit_weights_expected (c);
    int64_t total = 0;
    for (guint i = 0; i < specs->len; i++)
      total += spec_elements (g_ptr_array_index (specs, i));
    g_assert_cmpint (vdit_weights_n_params (w), ==, total);
    g_ptr_array_unref (specs);
    vdit_weights_free (w);
    vdit_config_free (c);
  }
  g_free (config);
  g_free (dir);
}

/* A FIFO named *.safetensors in the model directory blocked the load in open(). */
static void
test_fifo_file (void)
{
  if (!run_in_subprocess ())
    return;
  variant v = { 0 };
  char *dir = write_model ("fifo", &v);
  char *path = g_build_filename (dir, "c.safetensors", NULL);
  g_assert_cmpint (mkfifo (path, 0600), ==, 0);
  GError *err = NULL;
  g_assert_null (vdit_weights_load (dir, cfg, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, "not a regular file", NULL);
  g_error_free (err);
  g_free (path);
  g_free (dir);
}

/* The committed tiny model with `fifo` (config.json, model.safetensors or
 * tokenizer.model) replaced by a FIFO: vdit_model_load refuses it instead of blocking. */
static void
expect_model_fifo (const char *fifo)
{
  const char *root = g_getenv ("VDIT_SOURCE_ROOT");
  char *src = g_build_filename (root ? root : ".", "models", "tiny", NULL);
  char *sub = g_strdup_printf ("model-fifo-%s", fifo);
  char *dir = g_build_filename (tmpdir, sub, NULL);
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  static const char *const files[] = { "config.json", "model.safetensors", "tokenizer.model" };
  char *bad = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (files); i++) {
    char *to = g_build_filename (dir, files[i], NULL);
    if (g_str_equal (files[i], fifo)) {
      g_assert_cmpint (mkfifo (to, 0600), ==, 0);
      bad = g_strdup (to);
    } else {
      char *from = g_build_filename (src, files[i], NULL);
      char *abs = g_canonicalize_filename (from, NULL);
      g_assert_cmpint (symlink (abs, to), ==, 0);
      g_free (abs);
      g_free (from);
    }
    g_free (to);
  }
  GError *err = NULL;
  g_assert_null (vdit_model_load (dir, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, bad, "not a regular file", NULL);
  g_error_free (err);
  g_free (bad);
  g_free (dir);
  g_free (sub);
  g_free (src);
}

static void
test_model_fifo (void)
{
  if (!run_in_subprocess ())
    return;
  expect_model_fifo ("config.json");
  expect_model_fifo ("model.safetensors");
  expect_model_fifo ("tokenizer.model");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("vdit-weights-XXXXXX", NULL);
  cfg = vdit_config_parse (tiny_json, -1, "tiny/config.json", NULL);
  g_assert_nonnull (cfg);
  g_test_add_func ("/weights/expected", test_expected);
  g_test_add_func ("/weights/load", test_load_good);
  g_test_add_func ("/weights/upload", test_upload);
  g_test_add_func ("/weights/bad/missing-tensor", test_missing_tensor);
  g_test_add_func ("/weights/bad/wrong-shape", test_wrong_shape);
  g_test_add_func ("/weights/bad/extra-tensor", test_extra_tensor);
  g_test_add_func ("/weights/bad/duplicate-tensor", test_duplicate_tensor);
  g_test_add_func ("/weights/bad/no-safetensors-file", test_no_files);
  g_test_add_func ("/weights/bad/no-directory", test_no_dir);
  g_test_add_func ("/weights/bad/broken-file", test_bad_file);
  g_test_add_func ("/weights/bad/fifo", test_fifo_file);
  g_test_add_func ("/weights/bad/model-fifo", test_model_fifo);
  g_test_add_func ("/weights/random", test_random);
  g_test_add_func ("/weights/random-stats", test_random_stats);
  g_test_add_func ("/weights/tiny-model", test_tiny_model);
  int rc = g_test_run ();
  /* one level of subdirectories */
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)) != NULL) {
    char *sub = g_build_filename (tmpdir, name, NULL);
    test_rmdir (sub);
    g_free (sub);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_free (tmpdir);
  vdit_config_free (cfg);
  return rc;
}
