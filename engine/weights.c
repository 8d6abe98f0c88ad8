/* The weight table: the tensors docs/model-format.md derives from the config, found in
 * the model's safetensors files with their shapes checked, or filled with seeded
 * random values for benchmarks. */
#include "weights.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

struct vdit_weights {
  GPtrArray *files;        /* vdit_safetensors*, sorted by name */
  GPtrArray *specs;        /* the expected list (random weights name their views from it) */
  GHashTable *table;       /* name -> const vdit_tensor_view*, exactly the expected ones */
  vdit_tensor_view *owned; /* random weights: views into `values` */
  float *values;           /* random weights: every tensor, one allocation */
};

/* --- the expected tensor list */

typedef struct {
  int ndim;
  int64_t d[5];
} shape;

#define S1(a) ((shape) { 1, { (a) } })
#define S2(a, b) ((shape) { 2, { (a), (b) } })

static void
spec_free (gpointer p)
{
  vdit_tensor_spec *s = p;
  g_free (s->name);
  g_free (s);
}

static void G_GNUC_PRINTF (3, 4)
add (GPtrArray *out, shape s, const char *fmt, ...)
{
  vdit_tensor_spec *spec = g_new0 (vdit_tensor_spec, 1);
  va_list ap;
  va_start (ap, fmt);
  spec->name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  spec->ndim = s.ndim;
  memcpy (spec->shape, s.d, sizeof spec->shape);
  g_ptr_array_add (out, spec);
}

/* prefix.weight [o, i] and prefix.bias [o] */
static void G_GNUC_PRINTF (4, 5)
add_linear (GPtrArray *out, int64_t o, int64_t i, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *prefix = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  add (out, S2 (o, i), "%s.weight", prefix);
  add (out, S1 (o), "%s.bias", prefix);
  g_free (prefix);
}

static void
expect_text_encoder (GPtrArray *out, const vdit_text_config *t)
{
  const int64_t E = t->d_model, I = (int64_t) t->n_heads * t->d_kv, G = t->d_ff;
  const char *b = "text_encoder.encoder.block";
  add (out, S2 (t->vocab_size, E), "text_encoder.shared.weight");
  for (int i = 0; i < t->n_layers; i++) {
    add (out, S1 (E), "%s.%d.layer.0.layer_norm.weight", b, i);
    for (const char *p = "qkv"; *p; p++)
      add (out, S2 (I, E), "%s.%d.layer.0.SelfAttention.%c.weight", b, i, *p);
    add (out, S2 (E, I), "%s.%d.layer.0.SelfAttention.o.weight", b, i);
    if (i == 0)
      add (out, S2 (t->rel_buckets, t->n_heads),
           "%s.0.layer.0.SelfAttention.relative_attention_bias.weight", b);
    add (out, S1 (E), "%s.%d.layer.1.layer_norm.weight", b, i);
    add (out, S2 (G, E), "%s.%d.layer.1.DenseReluDense.wi_0.weight", b, i);
    add (out, S2 (G, E), "%s.%d.layer.1.DenseReluDense.wi_1.weight", b, i);
    add (out, S2 (E, G), "%s.%d.layer.1.DenseReluDense.wo.weight", b, i);
  }
  add (out, S1 (E), "text_encoder.encoder.final_layer_norm.weight");
}

static void
expect_dit_block (GPtrArray *out, const vdit_dit_config *c, int i)
{
  const int64_t D = c->hidden, F = c->ffn_hidden;
  add (out, S2 (6, D), "transformer_blocks.%d.scale_shift_table", i);
  for (int a = 1; a <= 2; a++) {
    for (const char *p = "qkv"; *p; p++)
      add_linear (out, D, D, "transformer_blocks.%d.attn%d.to_%c", i, a, *p);
    add_linear (out, D, D, "transformer_blocks.%d.attn%d.to_out.0", i, a);
  }
  add_linear (out, F, D, "transformer_blocks.%d.ff.net.0.proj", i);
  add_linear (out, D, F, "transformer_blocks.%d.ff.net.2", i);
}

static void
expect_dit (GPtrArray *out, const vdit_config *cfg)
{
  const vdit_dit_config *c = &cfg->dit;
  const int64_t D = c->hidden, C = c->in_channels;
  const int64_t P = (int64_t) c->patch[0] * c->patch[1] * c->patch[2];
  add (out, (shape) { 5, { D, C, c->patch[0], c->patch[1], c->patch[2] } },
       "pos_embed.proj.weight");
  add (out, S1 (D), "pos_embed.proj.bias");
  add_linear (out, D, c->freq_dim, "adaln_single.emb.timestep_embedder.linear_1");
  add_linear (out, D, D, "adaln_single.emb.timestep_embedder.linear_2");
  add_linear (out, 6 * D, D, "adaln_single.linear");
  add_linear (out, D, cfg->text.d_model, "caption_projection.linear_1");
  add_linear (out, D, D, "caption_projection.linear_2");
  for (int i = 0; i < c->depth; i++)
    expect_dit_block (out, c, i);
  add (out, S2 (2, D), "scale_shift_table");
  add_linear (out, P * C, D, "proj_out");
}

GPtrArray *
vdit_weights_expected (const vdit_config *cfg)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (spec_free);
  expect_text_encoder (out, &cfg->text);
  expect_dit (out, cfg);
  return out;
}

/* --- loading from safetensors */

static char *
shape_text (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static gboolean
shape_equal (const vdit_tensor_spec *spec, const vdit_tensor_view *t)
{
  if (spec->ndim != t->ndim)
    return FALSE;
  for (int i = 0; i < spec->ndim; i++)
    if (spec->shape[i] != t->shape[i])
      return FALSE;
  return TRUE;
}

static vdit_weights *
weights_new (const vdit_config *cfg)
{
  vdit_weights *w = g_new0 (vdit_weights, 1);
  w->files = g_ptr_array_new_with_free_func ((GDestroyNotify) vdit_safetensors_close);
  w->specs = vdit_weights_expected (cfg);
  w->table = g_hash_table_new (g_str_hash, g_str_equal);
  return w;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Paths of dir's *.safetensors files, sorted; NULL with an error when there are none. */
static GPtrArray *
list_files (const char *dir, GError **error)
{
  GError *derr = NULL;
  GDir *d = g_dir_open (dir, 0, &derr);
  if (d == NULL) {
    if (g_error_matches (derr, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "%s: no such directory", dir);
    else
      g_propagate_prefixed_error (error, g_steal_pointer (&derr), "%s: ", dir);
    g_clear_error (&derr);
    return NULL;
  }
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (name, ".safetensors"))
      g_ptr_array_add (names, g_build_filename (dir, name, NULL));
  g_dir_close (d);
  g_ptr_array_sort (names, compare_names);
  if (names->len == 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "%s: no .safetensors file", dir);
    g_clear_pointer (&names, g_ptr_array_unref);
  }
  return names;
}

/* Opens every file and indexes all their tensors by name (unique across files). */
static gboolean
open_files (vdit_weights *w, GPtrArray *paths, GHashTable *all, GError **error)
{
  for (guint f = 0; f < paths->len; f++) {
    vdit_safetensors *st = vdit_safetensors_open (g_ptr_array_index (paths, f), error);
    if (st == NULL)
      return FALSE;
    g_ptr_array_add (w->files, st);
    for (int i = 0; i < vdit_safetensors_count (st); i++) {
      const vdit_tensor_view *t = vdit_safetensors_get (st, i);
      const vdit_tensor_view *prev = g_hash_table_lookup (all, t->name);
      if (prev != NULL) {
        g_set_error (error, VDIT_ERROR, VDIT_ERROR_FORMAT, "tensor '%s' is in both %s and %s",
                     t->name, prev->file, t->file);
        return FALSE;
      }
      g_hash_table_insert (all, t->name, (gpointer) t);
    }
  }
  return TRUE;
}

static gboolean
check_spec (const char *dir, const vdit_tensor_spec *spec, const vdit_tensor_view *t,
            GError **error)
{
  if (t != NULL && shape_equal (spec, t))
    return TRUE;
  char *want = shape_text (spec->ndim, spec->shape);
  if (t == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING,
                 "%s: tensor '%s' is missing (config.json implies shape %s)", dir, spec->name,
                 want);
  } else {
    char *got = shape_text (t->ndim, t->shape);
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_SHAPE,
                 "%s: tensor '%s' has shape %s, expected %s from config.json", t->file,
                 spec->name, got, want);
    g_free (got);
  }
  g_free (want);
  return FALSE;
}

/* Tensors in the files that the config does not imply, reported in file order. */
static gboolean
check_extra (const vdit_weights *w, GError **error)
{
  for (guint f = 0; f < w->files->len; f++) {
    const vdit_safetensors *st = g_ptr_array_index (w->files, f);
    for (int i = 0; i < vdit_safetensors_count (st); i++) {
      const vdit_tensor_view *t = vdit_safetensors_get (st, i);
      if (!g_hash_table_contains (w->table, t->name)) {
        g_set_error (error, VDIT_ERROR, VDIT_ERROR_SHAPE,
                     "%s: unexpected tensor '%s': config.json implies no such tensor "
                     "(does the config match the weights?)", t->file, t->name);
        return FALSE;
      }
    }
  }
  return TRUE;
}

static gboolean
match_specs (vdit_weights *w, const char *dir, GHashTable *all, GError **error)
{
  for (guint i = 0; i < w->specs->len; i++) {
    const vdit_tensor_spec *spec = g_ptr_array_index (w->specs, i);
    const vdit_tensor_view *t = g_hash_table_lookup (all, spec->name);
    if (!check_spec (dir, spec, t, error))
      return FALSE;
    g_hash_table_insert (w->table, t->name, (gpointer) t);
  }
  return check_extra (w, error);
}

vdit_weights *
vdit_weights_load (const char *dir, const vdit_config *cfg, GError **error)
{
  GPtrArray *paths = list_files (dir, error);
  if (paths == NULL)
    return NULL;
  vdit_weights *w = weights_new (cfg);
  GHashTable *all = g_hash_table_new (g_str_hash, g_str_equal);
  gboolean ok = open_files (w, paths, all, error) && match_specs (w, dir, all, error);
  g_hash_table_unref (all);
  g_ptr_array_unref (paths);
  if (!ok)
    g_clear_pointer (&w, vdit_weights_free);
  return w;
}

/* --- seeded random weights */

static uint64_t
splitmix64 (uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A uniform in (0, 1): 53 random bits, offset by half a step so it is never 0. */
static double
uniform (uint64_t *state)
{
  return ((double) (splitmix64 (state) >> 11) + 0.5) * 0x1.0p-53;
}

/* Each tensor has its own stream, so its values do not depend on the others (and the
 * tensors can be filled in parallel). */
static uint64_t
tensor_seed (uint64_t seed, const char *name)
{
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (const char *p = name; *p; p++)
    h = (h ^ (uint8_t) *p) * 0x100000001b3ull;
  return seed ^ h;
}

static void
fill_tensor (float *dst, int64_t n, const char *name, uint64_t seed)
{
  float constant = -1.0f;
  if (g_str_has_suffix (name, "layer_norm.weight"))
    constant = 1.0f;
  else if (g_str_has_suffix (name, ".bias"))
    constant = 0.0f;
  if (constant >= 0.0f) {
    for (int64_t i = 0; i < n; i++)
      dst[i] = constant;
    return;
  }
  uint64_t state = tensor_seed (seed, name);
  for (int64_t i = 0; i < n; i += 2) {
    /* Box–Muller: two normals per pair of uniforms */
    double r = 0.02 * sqrt (-2.0 * log (uniform (&state))), a = 2.0 * G_PI * uniform (&state);
    dst[i] = (float) (r * cos (a));
    if (i + 1 < n)
      dst[i + 1] = (float) (r * sin (a));
  }
}

static void
make_views (vdit_weights *w, int64_t *total)
{
  int n = (int) w->specs->len;
  w->owned = g_new0 (vdit_tensor_view, n);
  *total = 0;
  for (int i = 0; i < n; i++) {
    const vdit_tensor_spec *spec = g_ptr_array_index (w->specs, i);
    vdit_tensor_view *t = &w->owned[i];
    t->name = spec->name;
    t->dtype = VDIT_DTYPE_F32;
    t->ndim = spec->ndim;
    t->n_elements = 1;
    for (int d = 0; d < spec->ndim; d++) {
      t->shape[d] = spec->shape[d];
      t->n_elements *= spec->shape[d];
    }
    t->file = "(random)";
    t->data = (const void *) (intptr_t) *total; /* an offset until the values exist */
    *total += t->n_elements;
    g_hash_table_insert (w->table, t->name, t);
  }
}

vdit_weights *
vdit_weights_new_random (const vdit_config *cfg, uint64_t seed, GError **error)
{
  vdit_weights *w = weights_new (cfg);
  int64_t total;
  make_views (w, &total);
  if ((guint64) total <= G_MAXSIZE / sizeof (float))
    w->values = g_try_new (float, (gsize) total);
  if (w->values == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "random weights for %s: cannot allocate %" G_GINT64_FORMAT " parameters "
                 "(%.1f GiB of f32)", cfg->name, total, total * 4.0 / (1 << 30));
    vdit_weights_free (w);
    return NULL;
  }
  int n = (int) w->specs->len;
  for (int i = 0; i < n; i++)
    w->owned[i].data = w->values + (intptr_t) w->owned[i].data;
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < n; i++)
    fill_tensor ((float *) w->owned[i].data, w->owned[i].n_elements, w->owned[i].name, seed);
  return w;
}

/* --- access */

void
vdit_weights_free (vdit_weights *w)
{
  if (w == NULL)
    return;
  g_hash_table_unref (w->table);
  g_ptr_array_unref (w->files);
  g_ptr_array_unref (w->specs);
  g_free (w->owned);
  g_free (w->values);
  g_free (w);
}

const vdit_tensor_view *
vdit_weights_get (const vdit_weights *w, const char *name)
{
  return g_hash_table_lookup (w->table, name);
}

gboolean
vdit_weights_read_f32 (const vdit_weights *w, const char *name, float *dst, size_t n,
                       GError **error)
{
  const vdit_tensor_view *t = vdit_weights_get (w, name);
  if (t == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "tensor '%s' is not in the weight table",
                 name);
    return FALSE;
  }
  if (n < (size_t) t->n_elements) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_SHAPE,
                 "tensor '%s' has %" G_GINT64_FORMAT " elements, more than the %" G_GSIZE_FORMAT
                 " asked for", name, t->n_elements, n);
    return FALSE;
  }
  vdit_convert_to_f32 (dst, t->data, t->dtype, (size_t) t->n_elements);
  return TRUE;
}

int64_t
vdit_weights_n_params (const vdit_weights *w)
{
  int64_t n = 0;
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, w->table);
  while (g_hash_table_iter_next (&it, NULL, &value))
    n += ((const vdit_tensor_view *) value)->n_elements;
  return n;
}

char *
vdit_weights_dtype_summary (const vdit_weights *w)
{
  static const char *const names[] = { "f32", "f16", "bf16" };
  int count[3] = { 0 }, order[3] = { 0, 1, 2 };
  GHashTableIter it;
  gpointer value;
  g_hash_table_iter_init (&it, w->table);
  while (g_hash_table_iter_next (&it, NULL, &value))
    count[((const vdit_tensor_view *) value)->dtype]++;
  /* most common first */
  for (int i = 1; i < 3; i++)
    for (int j = i; j > 0 && count[order[j]] > count[order[j - 1]]; j--) {
      int tmp = order[j];
      order[j] = order[j - 1];
      order[j - 1] = tmp;
    }
  GString *s = g_string_new (NULL);
  for (int i = 0; i < 3; i++)
    if (count[order[i]] > 0)
      g_string_append_printf (s, "%s%s (%d)", s->len ? ", " : "", names[order[i]],
                              count[order[i]]);
  return g_string_free (s, FALSE);
}
