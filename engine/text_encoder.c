/* T5 / mT5 encoder: RMSNorm, attention with relative-position bias and no 1/sqrt(d)
 * scale, gated-GELU feed-forward. */
#include "text_encoder.h"

#include "backend_util.h"

#include <math.h>

typedef struct {
  void *ln0, *qkv, *o, *ln1, *wi0, *wi1, *wo;
} te_layer;

struct vdit_text_encoder {
  vdit_backend *be;
  const vdit_text_config *cfg;
  const vdit_tensor_view *embedding; /* stays in the mapping; rows are looked up on the host */
  float *rel_bias;                   /* (rel_buckets, n_heads) host */
  te_layer *layers;
  void *final_ln;
};

#define TE "text_encoder.encoder.block.%d.layer."

static gboolean
te_layer_upload (vdit_text_encoder *te, const vdit_weights *w, int i, te_layer *l, GError **error)
{
  vdit_backend *be = te->be;
  g_autofree char *ln0 = g_strdup_printf (TE "0.layer_norm.weight", i);
  g_autofree char *q = g_strdup_printf (TE "0.SelfAttention.q.weight", i);
  g_autofree char *k = g_strdup_printf (TE "0.SelfAttention.k.weight", i);
  g_autofree char *v = g_strdup_printf (TE "0.SelfAttention.v.weight", i);
  g_autofree char *o = g_strdup_printf (TE "0.SelfAttention.o.weight", i);
  g_autofree char *ln1 = g_strdup_printf (TE "1.layer_norm.weight", i);
  g_autofree char *wi0 = g_strdup_printf (TE "1.DenseReluDense.wi_0.weight", i);
  g_autofree char *wi1 = g_strdup_printf (TE "1.DenseReluDense.wi_1.weight", i);
  g_autofree char *wo = g_strdup_printf (TE "1.DenseReluDense.wo.weight", i);
  const char *qkv[] = { q, k, v };
  return (l->ln0 = vdit_be_upload_weight (be, w, ln0, error)) &&
         (l->qkv = vdit_be_upload_concat (be, w, qkv, 3, error)) &&
         (l->o = vdit_be_upload_weight (be, w, o, error)) &&
         (l->ln1 = vdit_be_upload_weight (be, w, ln1, error)) &&
         (l->wi0 = vdit_be_upload_weight (be, w, wi0, error)) &&
         (l->wi1 = vdit_be_upload_weight (be, w, wi1, error)) &&
         (l->wo = vdit_be_upload_weight (be, w, wo, error));
}

vdit_text_encoder *
vdit_text_encoder_new (vdit_backend *be, const vdit_text_config *cfg, const vdit_weights *w,
                       GError **error)
{
  vdit_text_encoder *te = g_new0 (vdit_text_encoder, 1);
  te->be = be;
  te->cfg = cfg;
  te->layers = g_new0 (te_layer, cfg->n_layers);
  te->embedding = vdit_weights_get (w, "text_encoder.shared.weight");
  const char *rel = "text_encoder.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
  size_t n_rel = (size_t) cfg->rel_buckets * cfg->n_heads;
  te->rel_bias = g_new (float, n_rel);
  if (te->embedding == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "tensor text_encoder.shared.weight is missing");
    goto fail;
  }
  if (!vdit_weights_read_f32 (w, rel, te->rel_bias, n_rel, error))
    goto fail;
  for (int i = 0; i < cfg->n_layers; i++)
    if (!te_layer_upload (te, w, i, &te->layers[i], error))
      goto fail;
  if (!(te->final_ln = vdit_be_upload_weight (be, w, "text_encoder.encoder.final_layer_norm.weight", error)))
    goto fail;
  return te;
fail:
  vdit_text_encoder_free (te);
  return NULL;
}

double
vdit_text_encoder_weight_bytes (const vdit_text_config *cfg, size_t act_size)
{
  const double d = cfg->d_model, inner = (double) cfg->n_heads * cfg->d_kv, ff = cfg->d_ff;
  /* per layer: two norms, q k v and o, the gated feed-forward's wi_0 wi_1 and wo */
  const double layer = 2.0 * d + 4.0 * inner * d + 3.0 * ff * d;
  return (cfg->n_layers * layer + d) * (double) act_size;
}

void
vdit_text_encoder_free (vdit_text_encoder *te)
{
  if (te == NULL)
    return;
  for (int i = 0; te->layers && i < te->cfg->n_layers; i++) {
    void **bufs[] = { &te->layers[i].ln0, &te->layers[i].qkv, &te->layers[i].o,
                      &te->layers[i].ln1, &te->layers[i].wi0, &te->layers[i].wi1,
                      &te->layers[i].wo };
    for (guint j = 0; j < G_N_ELEMENTS (bufs); j++)
      vdit_be_clear (te->be, bufs[j]);
  }
  vdit_be_clear (te->be, &te->final_ln);
  g_free (te->layers);
  g_free (te->rel_bias);
  g_free (te);
}

int
vdit_t5_bucket (int rel, int n_buckets, int max_distance)
{
  const int n = n_buckets / 2, max_exact = n / 2;
  int ret = rel > 0 ? n : 0;
  int a = abs (rel);
  if (a < max_exact)
    return ret + a;
  float scaled = logf ((float) a / (float) max_exact) /
                 (float) log ((double) max_distance / max_exact) * (float) (n - max_exact);
  int large = max_exact + (int) scaled;
  return ret + MIN (large, n - 1);
}

/* bias(heads, n, n)[h, i, j] = rel_bias[bucket(j − i), h] */
static float *
te_position_bias (const vdit_text_encoder *te, int n)
{
  const int heads = te->cfg->n_heads;
  float *bias = g_new (float, (size_t) heads * n * n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      int b = vdit_t5_bucket (j - i, te->cfg->rel_buckets, te->cfg->rel_max_distance);
      for (int h = 0; h < heads; h++)
        bias[((size_t) h * n + i) * n + j] = te->rel_bias[b * heads + h];
    }
  return bias;
}

static gboolean
te_embed (const vdit_text_encoder *te, const int32_t *ids, int n, float *host, GError **error)
{
  const vdit_tensor_view *emb = te->embedding;
  const int d = te->cfg->d_model;
  const size_t row_bytes = (size_t) d * vdit_dtype_size (emb->dtype);
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= te->cfg->vocab_size) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "token id %d is outside the vocabulary (0..%d)", ids[i], te->cfg->vocab_size - 1);
      return FALSE;
    }
    vdit_convert_to_f32 (host + (size_t) i * d, (const char *) emb->data + ids[i] * row_bytes,
                         emb->dtype, d);
  }
  return TRUE;
}

gboolean
vdit_text_encoder_run (vdit_text_encoder *te, const int32_t *ids, int n, void *out, GError **error)
{
  vdit_backend *be = te->be;
  const vdit_backend_i *f = be->iface;
  void *c = be->context;
  const vdit_text_config *cfg = te->cfg;
  const int d = cfg->d_model, inner = cfg->n_heads * cfg->d_kv, ff = cfg->d_ff;
  gboolean ok = FALSE;
  g_autofree float *host = g_new (float, (size_t) n * d);
  g_autofree float *bias_host = te_position_bias (te, n);
  void *h = NULL, *x = NULL, *qkv = NULL, *att = NULL, *g = NULL, *u = NULL, *bias = NULL;
  void **bufs[] = { &h, &x, &qkv, &att, &g, &u, &bias };

  if (!te_embed (te, ids, n, host, error) ||
      !(h = vdit_be_upload_f32 (be, host, (size_t) n * d, error)) ||
      !(bias = vdit_be_upload_f32 (be, bias_host, (size_t) cfg->n_heads * n * n, error)) ||
      !(x = vdit_be_alloc (be, (size_t) n * d, error)) ||
      !(qkv = vdit_be_alloc (be, (size_t) n * 3 * inner, error)) ||
      !(att = vdit_be_alloc (be, (size_t) n * inner, error)) ||
      !(g = vdit_be_alloc (be, (size_t) n * ff, error)) ||
      !(u = vdit_be_alloc (be, (size_t) n * ff, error)))
    goto out;

  /* h is the residual stream; x the normalised input of each sub-layer */
  for (int i = 0; i < cfg->n_layers; i++) {
    const te_layer *l = &te->layers[i];
    f->rmsnorm (c, x, h, l->ln0, n, d, cfg->eps);
    f->matmul (c, qkv, 3 * inner, x, d, l->qkv, NULL, n, 3 * inner, d, VDIT_ACT_NONE, FALSE);
    f->attention (c, att, inner, qkv, 3 * inner, vdit_buf_at (be, qkv, inner), 3 * inner,
                  vdit_buf_at (be, qkv, 2 * inner), 3 * inner, n, n, cfg->n_heads, cfg->d_kv,
                  1.0f, bias, NULL, NULL);
    f->matmul (c, h, d, att, inner, l->o, NULL, n, d, inner, VDIT_ACT_NONE, TRUE);
    f->rmsnorm (c, x, h, l->ln1, n, d, cfg->eps);
    f->matmul (c, g, ff, x, d, l->wi0, NULL, n, ff, d, VDIT_ACT_GELU_TANH, FALSE);
    f->matmul (c, u, ff, x, d, l->wi1, NULL, n, ff, d, VDIT_ACT_NONE, FALSE);
    f->mul (c, g, g, u, (size_t) n * ff);
    f->matmul (c, h, d, g, ff, l->wo, NULL, n, d, ff, VDIT_ACT_NONE, TRUE);
  }
  f->rmsnorm (c, out, h, te->final_ln, n, d, cfg->eps);
  ok = f->sync (c, error);
out:
  for (guint i = 0; i < G_N_ELEMENTS (bufs); i++)
    vdit_be_clear (be, bufs[i]);
  return ok;
}
