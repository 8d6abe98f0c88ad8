/* The CausalVideoVAE decoder: vae/config.json and vae/vae.safetensors → layers, and the
 * decoder's forward (train/osp/vae.py is the PyTorch reference it is tested against). */
#include "vae_decoder.h"

#include "config.h"

#include "load_util.h"
#include "safetensors.h"
#include "vae_ops.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define LEVELS 4
#define MAX_BLOCKS 8

typedef struct {
  vdit_vae_norm norm1, norm2;
  vdit_vae_conv conv1, conv2, shortcut; /* shortcut.w NULL when cin == cout */
} resnet;

typedef struct {
  vdit_vae_norm norm;
  vdit_vae_conv q, k, v, proj;
} attn;

/* Per level of the decoder, from the top (level LEVELS − 1) down. */
typedef enum { UP_NONE, UP_NEAREST, UP_S2T2 } up_kind;

struct vdit_vae_decoder {
  int hidden, mult[LEVELS], n_blocks, z_channels;
  float scaling;
  vdit_vae_conv post_quant, conv_in, conv_out, upsample[LEVELS];
  up_kind up[LEVELS];
  resnet mid1, mid2, blocks[LEVELS][MAX_BLOCKS];
  attn mid_attn;
  vdit_vae_norm norm_out;
  vdit_vae_tiling tiling;
  GPtrArray *owned;  /* every weight array */
  GArray *owned_n;   /* size_t: the floats of each */
  vdit_op_times *host_times; /* NULL, or where the host ops add their times */
};

/* Weights come from st, or when st is NULL are drawn from seed. */
typedef struct {
  vdit_vae_decoder *v;
  vdit_safetensors *st;
  uint64_t seed;
  GError **error;
} loader;

static uint64_t
splitmix64 (uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A tensor of random weights as PyTorch initialises a fresh module, so activations keep
 * a trained decoder's scale through the layers: uniform in ±bound (convolutions:
 * 1/sqrt(fan_in) for weight and bias), or every value `value` (bound 0: GroupNorm's 1
 * and 0). Each tensor draws from its own stream, named by seed and tensor name. */
static float *
random_tensor (loader *l, const char *name, size_t n, float bound, float value)
{
  float *data = g_new (float, MAX (n, 1));
  uint64_t state = l->seed ^ 0xcbf29ce484222325ull;
  for (const char *p = name; *p; p++) /* FNV-1a of the name */
    state = (state ^ (uint8_t) *p) * 0x100000001b3ull;
  for (size_t i = 0; i < n; i++) {
    const double u = (double) (splitmix64 (&state) >> 11) * 0x1.0p-53; /* [0, 1) */
    data[i] = bound > 0.0f ? (float) ((2.0 * u - 1.0) * bound) : value;
  }
  return data;
}

static float *
tensor (loader *l, const char *name, int ndim, const int64_t *shape, float bound, float value)
{
  if (l->st == NULL) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
      n *= (size_t) shape[i];
    float *data = random_tensor (l, name, n, bound, value);
    g_ptr_array_add (l->v->owned, data);
    g_array_append_val (l->v->owned_n, n);
    return data;
  }
  const vdit_tensor_view *t = vdit_safetensors_find (l->st, name);
  if (t == NULL) {
    g_set_error (l->error, VDIT_ERROR, VDIT_ERROR_MISSING, "%s: tensor %s is missing",
                 vdit_safetensors_path (l->st), name);
    return NULL;
  }
  gboolean same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (!same) {
    g_set_error (l->error, VDIT_ERROR, VDIT_ERROR_SHAPE,
                 "%s: tensor %s does not have the shape config.json implies",
                 vdit_safetensors_path (l->st), name);
    return NULL;
  }
  float *data = g_new (float, t->n_elements);
  vdit_convert_to_f32 (data, t->data, t->dtype, t->n_elements);
  g_ptr_array_add (l->v->owned, data);
  g_array_append_val (l->v->owned_n, t->n_elements);
  return data;
}

static gboolean
conv (loader *l, vdit_vae_conv *c, const char *prefix, int cin, int cout, int kt, int kh, int kw)
{
  g_autofree char *wn = g_strdup_printf ("%s.conv.weight", prefix);
  g_autofree char *bn = g_strdup_printf ("%s.conv.bias", prefix);
  const int64_t ws[5] = { cout, cin, kt, kh, kw }, bs[1] = { cout };
  const float bound = 1.0f / sqrtf ((float) cin * kt * kh * kw);
  *c = (vdit_vae_conv) { .cout = cout, .cin = cin, .kt = kt, .kh = kh, .kw = kw };
  return (c->w = tensor (l, wn, 5, ws, bound, 0.0f)) &&
         (c->b = tensor (l, bn, 1, bs, bound, 0.0f));
}

static gboolean
norm (loader *l, vdit_vae_norm *n, const char *prefix, int c)
{
  g_autofree char *wn = g_strdup_printf ("%s.weight", prefix);
  g_autofree char *bn = g_strdup_printf ("%s.bias", prefix);
  const int64_t s[1] = { c };
  n->c = c;
  return (n->gamma = tensor (l, wn, 1, s, 0.0f, 1.0f)) &&
         (n->beta = tensor (l, bn, 1, s, 0.0f, 0.0f));
}

static gboolean
load_resnet (loader *l, resnet *r, const char *prefix, int cin, int cout)
{
  g_autofree char *n1 = g_strconcat (prefix, ".norm1", NULL);
  g_autofree char *c1 = g_strconcat (prefix, ".conv1", NULL);
  g_autofree char *n2 = g_strconcat (prefix, ".norm2", NULL);
  g_autofree char *c2 = g_strconcat (prefix, ".conv2", NULL);
  g_autofree char *sc = g_strconcat (prefix, ".nin_shortcut", NULL);
  r->shortcut.w = NULL;
  return norm (l, &r->norm1, n1, cin) && conv (l, &r->conv1, c1, cin, cout, 3, 3, 3) &&
         norm (l, &r->norm2, n2, cout) && conv (l, &r->conv2, c2, cout, cout, 3, 3, 3) &&
         (cin == cout || conv (l, &r->shortcut, sc, cin, cout, 1, 1, 1));
}

static gboolean
load_attn (loader *l, attn *a, int c)
{
  return norm (l, &a->norm, "decoder.mid.attn_1.norm", c) &&
         conv (l, &a->q, "decoder.mid.attn_1.q", c, c, 1, 1, 1) &&
         conv (l, &a->k, "decoder.mid.attn_1.k", c, c, 1, 1, 1) &&
         conv (l, &a->v, "decoder.mid.attn_1.v", c, c, 1, 1, 1) &&
         conv (l, &a->proj, "decoder.mid.attn_1.proj_out", c, c, 1, 1, 1);
}

/* The member if it is an array, else NULL (json-glib's getters are critical on a
 * mismatch, and config.json is input). */
static JsonArray *
member_array (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* A scalar member of the given type, or NULL for absent, null or another type. */
static JsonNode *
member_value (JsonObject *o, const char *key, GType type)
{
  JsonNode *n = json_object_get_member (o, key);
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == type ? n : NULL;
}

static const char *
member_string (JsonObject *o, const char *key)
{
  JsonNode *n = member_value (o, key, G_TYPE_STRING);
  return n ? json_node_get_string (n) : NULL;
}

/* An integer member clamped to [−1, 1e6] (values beyond are rejected by the range checks),
 * or def when absent; another type gives −1, which every check refuses. */
static int
member_int (JsonObject *o, const char *key, int def)
{
  if (!json_object_has_member (o, key))
    return def;
  JsonNode *n = member_value (o, key, G_TYPE_INT64);
  return n ? (int) CLAMP (json_node_get_int (n), -1, 1000000) : -1;
}

static double
member_double (JsonObject *o, const char *key, double def)
{
  if (!json_object_has_member (o, key))
    return def;
  JsonNode *n = json_object_get_member (o, key);
  if (n && JSON_NODE_HOLDS_VALUE (n) && (json_node_get_value_type (n) == G_TYPE_DOUBLE ||
                                         json_node_get_value_type (n) == G_TYPE_INT64))
    return json_node_get_double (n);
  return NAN;
}

static gboolean
bad_config (const char *path, const char *key, const char *why, GError **error)
{
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG, "%s: %s %s", path, key, why);
  return FALSE;
}

static gboolean
expect_string (JsonObject *o, const char *path, const char *key, const char *want, GError **error)
{
  const char *got = member_string (o, key);
  if (g_strcmp0 (got, want) != 0)
    return bad_config (path, key, "differs from Open-Sora-Plan v1.2's CausalVideoVAE decoder",
                       error);
  return TRUE;
}

static gboolean
parse_config (vdit_vae_decoder *v, const char *path, GError **error)
{
  gsize len = 0;
  g_autofree char *text = vdit_read_regular (path, 1 << 20, &len, error);
  if (text == NULL)
    return FALSE;
  g_autoptr (JsonParser) p = json_parser_new ();
  if (!json_parser_load_from_data (p, text, (gssize) len, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    return bad_config (path, "the file", "is not a JSON object", error);
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  static const char *const ups[LEVELS] = { "", "SpatialUpsample2x", "Spatial2xTime2x3DUpsample",
                                           "Spatial2xTime2x3DUpsample" };
  JsonArray *mult = member_array (o, "hidden_size_mult");
  JsonArray *up = member_array (o, "decoder_spatial_upsample");
  if (!mult || json_array_get_length (mult) != LEVELS || !up || json_array_get_length (up) != LEVELS)
    return bad_config (path, "hidden_size_mult / decoder_spatial_upsample",
                       "must have 4 levels", error);
  for (int i = 0; i < LEVELS; i++) {
    JsonNode *m = json_array_get_element (mult, i), *u = json_array_get_element (up, i);
    if (json_node_get_value_type (m) != G_TYPE_INT64)
      return bad_config (path, "hidden_size_mult", "must hold integers", error);
    v->mult[i] = (int) CLAMP (json_node_get_int (m), 0, 1000);
    if (json_node_get_value_type (u) != G_TYPE_STRING ||
        g_strcmp0 (json_node_get_string (u), ups[i]) != 0)
      return bad_config (path, "decoder_spatial_upsample",
                         "differs from Open-Sora-Plan v1.2's CausalVideoVAE decoder", error);
    v->up[i] = i == 0 ? UP_NONE : i == 1 ? UP_NEAREST : UP_S2T2;
  }
  v->hidden = member_int (o, "hidden_size", 0);
  v->n_blocks = member_int (o, "num_res_blocks", 0) + 1;
  v->z_channels = member_int (o, "z_channels", 0);
  int embed = member_int (o, "embed_dim", 0);
  v->scaling = (float) member_double (o, "scaling_factor", 0.18215);
  if (v->hidden < 32 || v->hidden % 32 != 0 || v->hidden > 4096)
    return bad_config (path, "hidden_size", "must be a multiple of 32 (GroupNorm's groups)", error);
  for (int i = 0; i < LEVELS; i++)
    if (v->mult[i] < 1 || v->mult[i] > 64)
      return bad_config (path, "hidden_size_mult", "must be small positive integers", error);
  if (v->n_blocks < 2 || v->n_blocks > MAX_BLOCKS)
    return bad_config (path, "num_res_blocks", "is out of range", error);
  if (v->z_channels < 1 || v->z_channels > 64 || embed != v->z_channels)
    return bad_config (path, "z_channels", "must equal embed_dim (at most 64)", error);
  if (!(v->scaling > 0.0f))
    return bad_config (path, "scaling_factor", "must be positive", error);
  /* the sample script's --enable_tiling at 720p unless the config says otherwise */
  v->tiling = (vdit_vae_tiling) {
    .latent = member_int (o, "tile_latent_min_size", 64),
    .sample = member_int (o, "tile_sample_min_size", 512),
    .latent_t = member_int (o, "tile_latent_min_size_t", 8),
    .overlap = (float) member_double (o, "tile_overlap_factor", 0.125),
  };
  JsonNode *use_tiling = member_value (o, "use_tiling", G_TYPE_BOOLEAN);
  if (use_tiling && !json_node_get_boolean (use_tiling))
    v->tiling.latent_t = 0;
  const vdit_vae_tiling *t = &v->tiling;
  if (t->latent_t != 0 && (t->latent_t < 2 || t->latent < 1 || t->sample < 1 ||
                           !(t->overlap >= 0.0f && t->overlap < 1.0f) ||
                           (int) (t->latent * (1.0f - t->overlap)) < 1))
    return bad_config (path, "tile_*", "are out of range", error);
  return expect_string (o, path, "decoder_attention", "AttnBlock3DFix", error) &&
         expect_string (o, path, "decoder_conv_in", "CausalConv3d", error) &&
         expect_string (o, path, "decoder_conv_out", "CausalConv3d", error) &&
         expect_string (o, path, "decoder_mid_resnet", "ResnetBlock3D", error);
}

static gboolean
load_weights (loader *l)
{
  vdit_vae_decoder *v = l->v;
  const int top = v->hidden * v->mult[LEVELS - 1], z = v->z_channels;
  if (!conv (l, &v->post_quant, "post_quant_conv", z, z, 1, 1, 1) ||
      !conv (l, &v->conv_in, "decoder.conv_in", z, top, 3, 3, 3) ||
      !load_resnet (l, &v->mid1, "decoder.mid.block_1", top, top) ||
      !load_attn (l, &v->mid_attn, top) ||
      !load_resnet (l, &v->mid2, "decoder.mid.block_2", top, top))
    return FALSE;
  int cin = top;
  for (int i = LEVELS - 1; i >= 0; i--) {
    const int cout = v->hidden * v->mult[i];
    for (int b = 0; b < v->n_blocks; b++) {
      g_autofree char *name = g_strdup_printf ("decoder.up.%d.block.%d", i, b);
      if (!load_resnet (l, &v->blocks[i][b], name, cin, cout))
        return FALSE;
      cin = cout;
    }
    g_autofree char *up = g_strdup_printf ("decoder.up.%d.upsample.conv", i);
    if (v->up[i] == UP_NEAREST && !conv (l, &v->upsample[i], up, cin, cin, 1, 3, 3))
      return FALSE;
    if (v->up[i] == UP_S2T2 && !conv (l, &v->upsample[i], up, cin, cin, 3, 3, 3))
      return FALSE;
  }
  return norm (l, &v->norm_out, "decoder.norm_out", cin) &&
         conv (l, &v->conv_out, "decoder.conv_out", cin, 3, 3, 3, 3);
}

static vdit_vae_decoder *
decoder_new (void)
{
  vdit_vae_decoder *v = g_new0 (vdit_vae_decoder, 1);
  v->owned = g_ptr_array_new_with_free_func (g_free);
  v->owned_n = g_array_new (FALSE, FALSE, sizeof (size_t));
  return v;
}

vdit_vae_decoder *
vdit_vae_decoder_new_random (const char *config_path, uint64_t seed, GError **error)
{
  vdit_vae_decoder *v = decoder_new ();
  loader l = { v, NULL, seed, error };
  if (!parse_config (v, config_path, error) || !load_weights (&l)) {
    vdit_vae_decoder_free (v);
    return NULL;
  }
  return v;
}

vdit_vae_decoder *
vdit_vae_decoder_load (const char *dir, GError **error)
{
  vdit_vae_decoder *v = decoder_new ();
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_autofree char *weights = g_build_filename (dir, "vae.safetensors", NULL);
  loader l = { v, NULL, 0, error };
  if (!parse_config (v, cfg, error) || !(l.st = vdit_safetensors_open (weights, error)) ||
      !load_weights (&l)) {
    if (l.st)
      vdit_safetensors_close (l.st);
    vdit_vae_decoder_free (v);
    return NULL;
  }
  vdit_safetensors_close (l.st); /* weights were copied to f32 */
  return v;
}

void
vdit_vae_decoder_free (vdit_vae_decoder *v)
{
  if (v == NULL)
    return;
  g_ptr_array_unref (v->owned);
  g_array_unref (v->owned_n);
  g_free (v);
}

/* Floats alive at the peak of decode_whole on (n, h, w), following its allocations. */
static double
whole_peak (const vdit_vae_decoder *v, int n, int h, int w)
{
  double px = (double) n * h * w, c = v->z_channels, peak = 2.0 * c * px;
  const double top = (double) v->hidden * v->mult[LEVELS - 1];
#define RESNET(cin, cout) peak = MAX (peak, px * ((cin) + 2.0 * (cout)))
  peak = MAX (peak, px * (c + top)); /* conv_in */
  RESNET (top, top);
  peak = MAX (peak, 6.0 * top * px + (double) n * h * w * h * w / n); /* attention */
  RESNET (top, top);
  c = top;
  for (int i = LEVELS - 1; i >= 0; i--) {
    const double cout = (double) v->hidden * v->mult[i];
    for (int b = 0; b < v->n_blocks; b++) {
      RESNET (c, cout);
      c = cout;
    }
    if (v->up[i] != UP_NONE) {
      const double t2 = v->up[i] == UP_S2T2 ? 1 + 2 * (n - 1) : n;
      const double up = c * t2 * (2.0 * h) * (2.0 * w);
      peak = MAX (peak, c * px + 2.0 * up);
      n = (int) t2, h *= 2, w *= 2;
      px = (double) n * h * w;
    }
  }
#undef RESNET
  return MAX (peak, px * (c + 3.0) + 3.0 * px); /* conv_out, then its (F, H, W, 3) copy */
}

void
vdit_vae_decoder_peak_split (const vdit_vae_decoder *v, int T, int h, int w, gboolean on_device,
                             uint64_t *host, uint64_t *device)
{
  const vdit_vae_tiling *tl = &v->tiling;
  const double latent = (double) v->z_channels * T * h * w;
  double layers, around; /* a tile's layers; the host's tiles, chunk and frames */
  if (tl->latent_t == 0 || (w <= tl->latent && h <= tl->latent && T <= tl->latent_t)) {
    layers = whole_peak (v, T, h, w);
    const double out = 3.0 * (1 + VDIT_VAE_TIME_FACTOR * (T - 1)) * VDIT_VAE_SPACE_FACTOR *
                       VDIT_VAE_SPACE_FACTOR * (double) h * w;
    around = on_device ? 2.0 * out : 0.0; /* the downloaded video and its frames */
  } else {
    const int n = MIN (T, tl->latent_t), th = MIN (h, tl->latent), tw = MIN (w, tl->latent);
    const double frames = 1 + VDIT_VAE_TIME_FACTOR * (n - 1), sq = VDIT_VAE_SPACE_FACTOR *
                                                                    VDIT_VAE_SPACE_FACTOR;
    /* every tile of a chunk stays decoded until the chunk is blended */
    const double tiles = 3.0 * frames * sq * (double) h * w * 2.0;
    const double chunk = 2.0 * 3.0 * frames * sq * h * w; /* (3, F, H, W) and its copy */
    layers = whole_peak (v, n, th, tw);
    around = tiles + chunk;
  }
  if (on_device) {
    *host = (uint64_t) ((around + 2.0 * latent) * sizeof (float));
    *device = (uint64_t) ((layers + DEVICE_COL_BUDGET_FLOATS) * sizeof (float));
  } else {
    *host = (uint64_t) ((layers + around + latent + COL_BUDGET_FLOATS) * sizeof (float));
    *device = 0;
  }
}

uint64_t
vdit_vae_decoder_peak_bytes (const vdit_vae_decoder *v, int T, int h, int w)
{
  uint64_t host, device;
  vdit_vae_decoder_peak_split (v, T, h, w, FALSE, &host, &device);
  return host;
}

uint64_t
vdit_vae_decoder_weight_bytes (const vdit_vae_decoder *v)
{
  uint64_t n = 0;
  for (guint i = 0; i < v->owned_n->len; i++)
    n += g_array_index (v->owned_n, size_t, i);
  return n * sizeof (float);
}

void
vdit_vae_decoder_set_tiling (vdit_vae_decoder *v, const vdit_vae_tiling *t)
{
  v->tiling = *t;
}

vdit_vae_tiling
vdit_vae_decoder_get_tiling (const vdit_vae_decoder *v)
{
  return v->tiling;
}

void
vdit_vae_decoder_time_host_ops (vdit_vae_decoder *v, vdit_op_times *times)
{
  v->host_times = times;
}

/* ---- work of a decode ------------------------------------------------------------- */

static double
conv_flops (const vdit_vae_conv *c, double px)
{
  return 2.0 * c->cout * c->cin * c->kt * c->kh * c->kw * px;
}

static double
resnet_flops (const resnet *r, double px)
{
  return conv_flops (&r->conv1, px) + conv_flops (&r->conv2, px) +
         (r->shortcut.w ? conv_flops (&r->shortcut, px) : 0.0);
}

/* decode_whole's convolutions and attention GEMMs on (n, h, w), layer by layer. */
static double
whole_flops (const vdit_vae_decoder *v, int n, int h, int w)
{
  double px = (double) n * h * w;
  const double hw = (double) h * w;
  const attn *a = &v->mid_attn;
  double f = conv_flops (&v->post_quant, px) + conv_flops (&v->conv_in, px) +
             resnet_flops (&v->mid1, px) + resnet_flops (&v->mid2, px) +
             conv_flops (&a->q, px) + conv_flops (&a->k, px) + conv_flops (&a->v, px) +
             conv_flops (&a->proj, px) + 4.0 * n * hw * hw * a->q.cout; /* QKᵀ and PV */
  for (int i = LEVELS - 1; i >= 0; i--) {
    for (int b = 0; b < v->n_blocks; b++)
      f += resnet_flops (&v->blocks[i][b], px);
    if (v->up[i] != UP_NONE) {
      n = v->up[i] == UP_S2T2 ? 1 + 2 * (n - 1) : n;
      h *= 2, w *= 2;
      px = (double) n * h * w;
      f += conv_flops (&v->upsample[i], px);
    }
  }
  return f + conv_flops (&v->conv_out, px);
}

/* Whether vdit_vae_decode_stream_on decodes (T, h, w) in one piece. */
static gboolean
decodes_whole (const vdit_vae_decoder *v, int T, int h, int w)
{
  const vdit_vae_tiling *tl = &v->tiling;
  return tl->latent_t == 0 || (w <= tl->latent && h <= tl->latent && T <= tl->latent_t);
}

/* The temporal chunks [start, end) of CausalVAEModel.tiled_decode: every latent_t − 1
 * frames, overlapping by one; *start < 0 begins, FALSE after the last. */
static gboolean
next_chunk (const vdit_vae_tiling *tl, int T, int *start, int *end)
{
  if (*start >= 0 && *end == T)
    return FALSE;
  *start = *start < 0 ? 0 : *start + tl->latent_t - 1;
  *end = MIN (*start + tl->latent_t, T);
  return TRUE;
}

double
vdit_vae_decoder_flops (const vdit_vae_decoder *v, int T, int h, int w, int *chunks, int *tiles)
{
  const vdit_vae_tiling *tl = &v->tiling;
  *chunks = *tiles = 1;
  if (decodes_whole (v, T, h, w))
    return whole_flops (v, T, h, w);
  const int stride = (int) (tl->latent * (1.0f - tl->overlap));
  double f = 0.0;
  *chunks = 0;
  *tiles = ((h + stride - 1) / stride) * ((w + stride - 1) / stride);
  for (int start = -1, end = 0; next_chunk (tl, T, &start, &end); (*chunks)++)
    for (int y = 0; y < h; y += stride)
      for (int x = 0; x < w; x += stride)
        f += whole_flops (v, end - start, MIN (tl->latent, h - y), MIN (tl->latent, w - x));
  return f;
}

int
vdit_vae_decoder_channels (const vdit_vae_decoder *v)
{
  return v->z_channels;
}

/* ---- where the layers run --------------------------------------------------------- */

struct vdit_vae_device {
  vdit_backend *be;
  const vdit_vae_decoder *v;
  GHashTable *weights; /* host weight array → its F32 buffer on be */
};

gboolean
vdit_vae_device_supported (const vdit_backend *be)
{
  const vdit_backend_i *f = be->iface;
  return f->vae_conv3d && f->vae_group_norm && f->vae_upsample && f->vae_frame_attention;
}

vdit_vae_device *
vdit_vae_device_new (const vdit_vae_decoder *v, vdit_backend *be, GError **error)
{
  if (!vdit_vae_device_supported (be)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "the %s backend has no CausalVideoVAE layers", be->iface->name);
    return NULL;
  }
  vdit_vae_device *d = g_new0 (vdit_vae_device, 1);
  d->be = be;
  d->v = v;
  d->weights = g_hash_table_new (NULL, NULL);
  for (guint i = 0; i < v->owned->len; i++) {
    const float *host = g_ptr_array_index (v->owned, i);
    const size_t n = g_array_index (v->owned_n, size_t, i);
    void *buf = be->iface->alloc (be->context, MAX (n, 1), VDIT_ELEM_F32, error);
    if (buf == NULL) {
      vdit_vae_device_free (d);
      return NULL;
    }
    g_hash_table_insert (d->weights, (gpointer) host, buf);
    if (!be->iface->upload (be->context, buf, host, n, VDIT_ELEM_F32, error)) {
      vdit_vae_device_free (d);
      return NULL;
    }
  }
  return d;
}

void
vdit_vae_device_free (vdit_vae_device *d)
{
  if (d == NULL)
    return;
  GHashTableIter it;
  gpointer buf;
  g_hash_table_iter_init (&it, d->weights);
  while (g_hash_table_iter_next (&it, NULL, &buf))
    d->be->iface->release (d->be->context, buf);
  g_hash_table_unref (d->weights);
  g_free (d);
}

/* A decode's layers run with the host ops (dev NULL) or with dev's backend slots on its
 * buffers. Device allocation can fail: the first failure lands in error, ok turns FALSE
 * and every later op is skipped (the buffers made so far are still freed). */
typedef struct {
  const vdit_vae_device *dev;
  gboolean ok;
  GError **error;
  vdit_op_times *times; /* host ops only: the decoder's host_times */
} runner;

/* The host clock around a host op, when its time is asked for (a backend's ops are
 * timed by backend_timing.h instead); the kinds are those of the backend slots. */
static gint64
host_begin (const runner *r)
{
  return r->times ? g_get_monotonic_time () : 0;
}

static void
host_end (runner *r, VditOpKind kind, gint64 t0)
{
  if (r->times) {
    r->times->ms[kind] += (g_get_monotonic_time () - t0) / 1000.0;
    r->times->calls[kind]++;
  }
}

static float *
buf_new (runner *r, size_t n)
{
  if (r->dev == NULL)
    return g_new (float, n);
  if (!r->ok)
    return NULL;
  const vdit_backend *be = r->dev->be;
  float *p = be->iface->alloc (be->context, n, VDIT_ELEM_F32, r->error);
  r->ok = p != NULL;
  return p;
}

static void
buf_free (runner *r, float *p)
{
  if (r->dev == NULL)
    g_free (p);
  else if (p)
    r->dev->be->iface->release (r->dev->be->context, p);
}

/* A weight's buffer on the device. */
static const float *
dw (const runner *r, const float *host)
{
  return g_hash_table_lookup (r->dev->weights, host);
}

#define DEV_OP(r, slot, ...) (r)->dev->be->iface->slot ((r)->dev->be->context, __VA_ARGS__)

/* out = conv(in), or out += conv(in) when accumulate (out then holds cout channels). */
static void
op_conv (runner *r, float *out, const float *in, const vdit_vae_conv *c, int T, int H, int W,
         gboolean accumulate)
{
  if (!r->ok)
    return;
  if (r->dev) {
    DEV_OP (r, vae_conv3d, out, in, dw (r, c->w), dw (r, c->b), c->cout, c->cin, c->kt, c->kh,
            c->kw, T, H, W, accumulate);
    return;
  }
  const gint64 t0 = host_begin (r);
  if (!accumulate) {
    vdit_vae_conv3d (out, in, c, T, H, W);
  } else {
    const size_t n = (size_t) c->cout * T * H * W;
    float *h = g_new (float, n);
    vdit_vae_conv3d (h, in, c, T, H, W);
    for (size_t i = 0; i < n; i++)
      out[i] += h[i];
    g_free (h);
  }
  host_end (r, VDIT_OP_GEMM, t0);
}

/* out = GroupNorm(x) (then SiLU); out may be x. */
static void
op_norm (runner *r, float *out, const float *x, const vdit_vae_norm *n, size_t per_channel,
         gboolean silu)
{
  if (!r->ok)
    return;
  if (r->dev) {
    DEV_OP (r, vae_group_norm, out, x, dw (r, n->gamma), dw (r, n->beta), n->c, per_channel,
            silu);
    return;
  }
  const gint64 t0 = host_begin (r);
  if (out != x)
    memcpy (out, x, sizeof (float) * n->c * per_channel);
  vdit_vae_group_norm (out, n, per_channel, silu);
  host_end (r, VDIT_OP_NORM, t0);
}

static void
op_upsample (runner *r, float *out, const float *in, gboolean temporal, int C, int T, int H, int W)
{
  if (!r->ok)
    return;
  if (r->dev) {
    DEV_OP (r, vae_upsample, out, in, C, T, H, W, temporal);
    return;
  }
  const gint64 t0 = host_begin (r);
  if (temporal)
    vdit_vae_upsample_s2t2 (out, in, C, T, H, W);
  else
    vdit_vae_upsample_nearest2x (out, in, C, T, H, W);
  host_end (r, VDIT_OP_ELEMENTWISE, t0);
}

static void
op_attention (runner *r, float *out, const float *q, const float *k, const float *v, int C, int T,
              int HW)
{
  if (!r->ok)
    return;
  if (r->dev) {
    DEV_OP (r, vae_frame_attention, out, q, k, v, C, T, HW);
    return;
  }
  const gint64 t0 = host_begin (r);
  vdit_vae_frame_attention (out, q, k, v, C, T, HW);
  host_end (r, VDIT_OP_ATTENTION, t0);
}

/* ---- the layers ------------------------------------------------------------------- */

/* The activation of one clip: (c, t, h, w), on the host or the runner's device. */
typedef struct {
  float *x;
  int c, t, h, w;
} act;

static size_t
per_channel (const act *a)
{
  return (size_t) a->t * a->h * a->w;
}

static act
act_new (runner *r, int c, int t, int h, int w)
{
  return (act) { buf_new (r, (size_t) c * t * h * w), c, t, h, w };
}

/* x ← conv(x) with a new channel count (same frames and size). */
static void
apply_conv (runner *r, act *a, const vdit_vae_conv *c)
{
  act out = act_new (r, c->cout, a->t, a->h, a->w);
  op_conv (r, out.x, a->x, c, a->t, a->h, a->w, FALSE);
  buf_free (r, a->x);
  *a = out;
}

static void
apply_resnet (runner *r, act *a, const resnet *rn)
{
  act h = act_new (r, a->c, a->t, a->h, a->w);
  op_norm (r, h.x, a->x, &rn->norm1, per_channel (a), TRUE);
  apply_conv (r, &h, &rn->conv1);
  op_norm (r, h.x, h.x, &rn->norm2, per_channel (&h), TRUE);
  if (rn->shortcut.w)
    apply_conv (r, a, &rn->shortcut);
  op_conv (r, a->x, h.x, &rn->conv2, h.t, h.h, h.w, TRUE); /* a += conv2(h) */
  buf_free (r, h.x);
}

static void
apply_attn (runner *r, act *a, const attn *at)
{
  const size_t n = (size_t) a->c * per_channel (a);
  float *h = buf_new (r, n), *q = buf_new (r, n), *k = buf_new (r, n), *v = buf_new (r, n);
  op_norm (r, h, a->x, &at->norm, per_channel (a), FALSE);
  op_conv (r, q, h, &at->q, a->t, a->h, a->w, FALSE);
  op_conv (r, k, h, &at->k, a->t, a->h, a->w, FALSE);
  op_conv (r, v, h, &at->v, a->t, a->h, a->w, FALSE);
  op_attention (r, h, q, k, v, a->c, a->t, a->h * a->w); /* h is free again: the output */
  op_conv (r, a->x, h, &at->proj, a->t, a->h, a->w, TRUE);
  buf_free (r, q);
  buf_free (r, k);
  buf_free (r, v);
  buf_free (r, h);
}

static void
apply_upsample (runner *r, act *a, up_kind kind, const vdit_vae_conv *c)
{
  const int t2 = kind == UP_S2T2 ? 1 + 2 * (a->t - 1) : a->t;
  act up = act_new (r, a->c, t2, 2 * a->h, 2 * a->w);
  op_upsample (r, up.x, a->x, kind == UP_S2T2, a->c, a->t, a->h, a->w);
  buf_free (r, a->x);
  *a = up;
  apply_conv (r, a, c);
}

/* The decoder on a latent (z, n, h, w) on the host, scaled already: video (3, 1 + 4(n − 1),
 * 8h, 8w) on the host; x NULL (error set) when the device failed. */
static act
decode_whole (vdit_vae_decoder *v, const vdit_vae_device *dev, const float *z, int n, int h,
              int w, GError **error)
{
  runner run = { dev, TRUE, error, dev ? NULL : v->host_times }, *r = &run;
  const size_t nz = (size_t) v->z_channels * n * h * w;
  act a = act_new (r, v->z_channels, n, h, w);
  if (dev == NULL)
    memcpy (a.x, z, sizeof (float) * nz);
  else if (r->ok)
    r->ok = dev->be->iface->upload (dev->be->context, a.x, z, nz, VDIT_ELEM_F32, error);
  apply_conv (r, &a, &v->post_quant);
  apply_conv (r, &a, &v->conv_in);
  apply_resnet (r, &a, &v->mid1);
  apply_attn (r, &a, &v->mid_attn);
  apply_resnet (r, &a, &v->mid2);
  for (int i = LEVELS - 1; i >= 0; i--) {
    for (int b = 0; b < v->n_blocks; b++)
      apply_resnet (r, &a, &v->blocks[i][b]);
    if (v->up[i] != UP_NONE)
      apply_upsample (r, &a, v->up[i], &v->upsample[i]);
  }
  op_norm (r, a.x, a.x, &v->norm_out, per_channel (&a), TRUE);
  apply_conv (r, &a, &v->conv_out);
  if (dev == NULL)
    return a;
  /* the decoded tile comes back to the host, where tiles are blended */
  const size_t nv = (size_t) a.c * per_channel (&a);
  float *host = r->ok ? g_new (float, nv) : NULL;
  if (host && !dev->be->iface->download (dev->be->context, host, a.x, nv, VDIT_ELEM_F32, error))
    g_clear_pointer (&host, g_free);
  buf_free (r, a.x);
  a.x = host;
  return a;
}

/* The window [y0, y0 + th) × [x0, x0 + tw) of frames [t0, t0 + n) of z (c, T, h, w). */
static float *
crop (const float *z, int c, int T, int h, int w, int t0, int n, int y0, int th, int x0, int tw)
{
  float *out = g_new (float, (size_t) c * n * th * tw);
  for (int ci = 0; ci < c; ci++)
    for (int t = 0; t < n; t++)
      for (int y = 0; y < th; y++)
        memcpy (out + (((size_t) ci * n + t) * th + y) * tw,
                z + (((size_t) ci * T + t0 + t) * h + y0 + y) * w + x0, sizeof (float) * tw);
  return out;
}

/* b's first rows (vertical) or columns take a's last ones, linearly weighted, in place:
 * CausalVAEModel.blend_v / blend_h. */
static void
blend (const act *a, act *b, int extent, gboolean vertical)
{
  extent = MIN (extent, vertical ? MIN (a->h, b->h) : MIN (a->w, b->w));
  for (int c = 0; c < b->c; c++)
    for (int t = 0; t < b->t; t++) {
      const float *pa = a->x + ((size_t) c * a->t + t) * a->h * a->w;
      float *pb = b->x + ((size_t) c * b->t + t) * b->h * b->w;
      for (int e = 0; e < extent; e++) {
        const float wb = (float) e / extent, wa = 1.0f - wb;
        if (vertical)
          for (int x = 0; x < b->w; x++)
            pb[e * b->w + x] = pa[(a->h - extent + e) * a->w + x] * wa + pb[e * b->w + x] * wb;
        else
          for (int y = 0; y < b->h; y++)
            pb[y * b->w + e] = pa[y * a->w + a->w - extent + e] * wa + pb[y * b->w + e] * wb;
      }
    }
}

/* CausalVAEModel.tiled_decode2d on frames [t0, t0 + n): tiles decoded one by one, each
 * blended in place with the one above and the one on its left, cropped to the stride,
 * written into out (3, F, H, W), skipping the first `skip` decoded frames. */
static gboolean
decode_tiles (vdit_vae_decoder *v, const vdit_vae_device *dev, const float *z, int T, int h,
              int w, int t0, int n, float *out, int F, int skip, GError **error)
{
  const vdit_vae_tiling *tl = &v->tiling;
  const int stride = (int) (tl->latent * (1.0f - tl->overlap));
  const int extent = (int) (tl->sample * tl->overlap), limit = tl->sample - extent;
  const int rows = (h + stride - 1) / stride, cols = (w + stride - 1) / stride;
  const int H = h * VDIT_VAE_SPACE_FACTOR, W = w * VDIT_VAE_SPACE_FACTOR;
  act *tiles = g_new0 (act, (size_t) rows * cols);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < rows; i++)
    for (int j = 0; ok && j < cols; j++) {
      const int th = MIN (tl->latent, h - i * stride), tw = MIN (tl->latent, w - j * stride);
      g_autofree float *zt = crop (z, v->z_channels, T, h, w, t0, n, i * stride, th, j * stride, tw);
      act *a = &tiles[i * cols + j];
      *a = decode_whole (v, dev, zt, n, th, tw, error);
      if (!(ok = a->x != NULL))
        break;
      if (i > 0)
        blend (&tiles[(i - 1) * cols + j], a, extent, TRUE);
      if (j > 0)
        blend (&tiles[i * cols + j - 1], a, extent, FALSE);
    }
  for (int i = 0; ok && i < rows; i++)
    for (int j = 0; j < cols; j++) {
      const act *a = &tiles[i * cols + j];
      const int y0 = i * limit, x0 = j * limit;
      for (int c = 0; c < 3; c++)
        for (int t = skip; t < a->t; t++)
          for (int y = 0; y < MIN (a->h, limit) && y0 + y < H; y++)
            for (int x = 0; x < MIN (a->w, limit) && x0 + x < W; x++)
              out[(((size_t) c * F + t - skip) * H + y0 + y) * W + x0 + x] =
                a->x[(((size_t) c * a->t + t) * a->h + y) * a->w + x];
    }
  for (int i = 0; i < rows * cols; i++)
    g_free (tiles[i].x);
  g_free (tiles);
  return ok;
}

/* (3, F, H, W) → (F, H, W, 3) handed to the callback as frames [first, first + F). */
static gboolean
hand_out (const float *chw, int F, int H, int W, int first, vdit_vae_frames_cb cb, void *user_data,
          GError **error)
{
  const size_t plane = (size_t) H * W;
  float *frames = g_new (float, (size_t) F * plane * 3);
  for (int t = 0; t < F; t++)
    for (size_t p = 0; p < plane; p++)
      for (int c = 0; c < 3; c++)
        frames[(t * plane + p) * 3 + c] = chw[(size_t) c * F * plane + t * plane + p];
  gboolean ok = cb (user_data, first, F, frames, error);
  g_free (frames);
  return ok;
}

gboolean
vdit_vae_decode_stream_on (vdit_vae_decoder *v, const vdit_vae_device *dev, const float *latent,
                           int T, int h, int w, vdit_vae_frames_cb on_frames, void *user_data,
                           GError **error)
{
  g_return_val_if_fail (dev == NULL || dev->v == v, FALSE);
  if (T < 1 || h < 1 || w < 1 || (size_t) T * h * w > (1u << 24)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "a latent of %d × %d × %d cannot be decoded", T, h, w);
    return FALSE;
  }
  const int z_c = v->z_channels, F = 1 + VDIT_VAE_TIME_FACTOR * (T - 1);
  const int H = h * VDIT_VAE_SPACE_FACTOR, W = w * VDIT_VAE_SPACE_FACTOR;
  const size_t plane = (size_t) h * w;
  g_autofree float *z = g_new (float, (size_t) z_c * T * plane);
  for (int t = 0; t < T; t++) /* (T, h, w, C) → (C, T, h, w), undoing the scaling */
    for (size_t p = 0; p < plane; p++)
      for (int c = 0; c < z_c; c++)
        z[(size_t) c * T * plane + t * plane + p] = latent[(t * plane + p) * z_c + c] / v->scaling;
  if (decodes_whole (v, T, h, w)) {
    act a = decode_whole (v, dev, z, T, h, w, error);
    if (a.x == NULL)
      return FALSE;
    gboolean ok = hand_out (a.x, F, H, W, 0, on_frames, user_data, error);
    g_free (a.x);
    return ok;
  }
  /* CausalVAEModel.tiled_decode: chunks start every latent_t − 1 frames and overlap by
   * one; a later chunk's first decoded frame repeats the previous chunk's last */
  int first = 0;
  for (int start = -1, end = 0; next_chunk (&v->tiling, T, &start, &end);) {
    const int skip = start > 0;
    const int n_out = 1 + VDIT_VAE_TIME_FACTOR * (end - start - 1) - skip;
    float *chw = g_new (float, (size_t) 3 * n_out * H * W);
    gboolean ok = decode_tiles (v, dev, z, T, h, w, start, end - start, chw, n_out, skip, error) &&
                  hand_out (chw, n_out, H, W, first, on_frames, user_data, error);
    g_free (chw);
    if (!ok)
      return FALSE;
    first += n_out;
  }
  g_assert (first == F);
  return TRUE;
}

gboolean
vdit_vae_decode_stream (vdit_vae_decoder *v, const float *latent, int T, int h, int w,
                        vdit_vae_frames_cb on_frames, void *user_data, GError **error)
{
  return vdit_vae_decode_stream_on (v, NULL, latent, T, h, w, on_frames, user_data, error);
}

typedef struct {
  float *video;
  size_t frame_values;
} whole_clip;

static gboolean
copy_frames (void *user_data, int first, int n, const float *frames, GError **error)
{
  whole_clip *w = user_data;
  memcpy (w->video + first * w->frame_values, frames, sizeof (float) * n * w->frame_values);
  return TRUE;
}

gboolean
vdit_vae_decode (vdit_vae_decoder *v, const float *latent, int T, int h, int w, float *video,
                 GError **error)
{
  whole_clip clip = { video, (size_t) h * w * VDIT_VAE_SPACE_FACTOR * VDIT_VAE_SPACE_FACTOR * 3 };
  return vdit_vae_decode_stream (v, latent, T, h, w, copy_frames, &clip, error);
}

void
vdit_vae_rgb (uint8_t *rgb, const float *values, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    float v = values[i] / 2.0f + 0.5f;
    v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN fails v > 0 */
    rgb[i] = (uint8_t) (v * 255.0f);
  }
}
