/* vdit_ctx and vdit_generate: prompt → tokens → text embeddings → noise → N DiT steps
 * with guidance → decoded frames, each handed out as soon as it exists. */
#include "attention_plan.h"
#include "ctx.h"
#include "backend.h"
#include "cpu/cpu_threads.h"
#include "decoder.h"
#include "vae_decoder.h"
#include "dit.h"
#include "model.h"
#include "philox.h"
#include "sampler.h"
#include "text_encoder.h"
#include "sp_exchange.h"
#include "sp_group.h"
#include "ulysses.h"
#include "vdit_bench.h"
#include "worker.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

struct vdit_ctx {
  vdit_model *model;
  vdit_backend be;
  vdit_dit *dit;
  gint cancelled; /* atomic */
  vdit_ctx_params params;
  vdit_ctx *base; /* vdit_ctx_new_shared: the context that owns the weights */
  gint views;     /* atomic: contexts sharing this one's weights, which it must outlive */
  const vdit_comm *comm; /* sequence parallelism over its ranks; NULL = this process alone */
  const vdit_comm *exchange; /* the DiT's exchanges when not comm (NCCL) */
  vdit_comm nccl;        /* under MPI: NCCL bootstrapped by comm (sp_exchange.h) */
  gboolean have_nccl;
  int cuda_device;       /* −1 on the CPU */
  vdit_sp_group *group;  /* in-process ranks of which this context is rank 0 */
  vdit_vae_device *vae;  /* the CausalVideoVAE's weights on be, uploaded at the first decode */
  vdit_text_encoder *te; /* kept on a device between generations while it has room */
  gboolean out_of_step;  /* a clip failed while the other ranks were inside it */
};

#define EOS_ID 1

gboolean
vdit_ctx_params_check (const vdit_ctx_params *p, int *cuda_device, GError **error)
{
  if (cuda_device)
    *cuda_device = -1;
  if (p->gpus < 1) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "gpus = %d must be at least 1", p->gpus);
    return FALSE;
  }
  if (!vdit_cpu_threads_check (p->threads, error))
    return FALSE;
  int n_gpus = 0;
  /* device=cpu needs no probe of the driver */
  const gboolean have_cuda = p->device != VDIT_DEVICE_CPU && vdit_cuda_available (&n_gpus);
  if (p->device == VDIT_DEVICE_CPU || (p->device == VDIT_DEVICE_AUTO && !have_cuda)) {
    if (p->gpus > 1) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                   p->device == VDIT_DEVICE_CPU
                     ? "gpus = %d needs CUDA GPUs, but device=cpu (set gpus=1)"
                     : "gpus = %d requested but no CUDA device is available", p->gpus);
      return FALSE;
    }
    return TRUE;
  }
  if (!have_cuda) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "device=cuda requested but no CUDA device is available (use device=cpu or auto)");
    return FALSE;
  }
  const int first = p->device_id < 0 ? 0 : p->device_id;
  if (first >= n_gpus || p->gpus > n_gpus - first) { /* no overflow near G_MAXINT */
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "%d GPU(s) from device %d requested but only %d present", p->gpus, first, n_gpus);
    return FALSE;
  }
  GError *why = NULL;
  if (p->gpus > 1 && !vdit_comm_nccl_available (&why)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NO_DEVICE,
                 "gpus = %d: sequence parallelism over GPUs needs NCCL: %s", p->gpus,
                 why->message);
    g_error_free (why);
    return FALSE;
  }
  if (cuda_device)
    *cuda_device = first;
  return TRUE;
}

/* Whether a generation keeps its latent on the backend and samples there: the backend has
 * the sampler's slots and the clip runs in this process alone (a parallel job gathers
 * the forward's rows on the host). */
static gboolean
gen_sampler_on_backend (const vdit_ctx *ctx)
{
  const vdit_backend_i *f = ctx->be.iface;
  return f->patchify && f->unpatchify && f->sampler_update && f->all_finite && ctx->comm == NULL;
}

/* ---- memory ------------------------------------------------------------------------ */

/* What a generation holds at its peak, in bytes. Doubles, so that no size overflows
 * before it is compared. */
typedef struct {
  double tokens;  /* DiT tokens of the clip */
  double latent;  /* host: the latent and its five working copies */
  double host;    /* host: RoPE tables, a decoded frame */
  double acts;    /* backend: DiT workspace, both prompts' K/V, the text encoder's peak */
  double weights; /* backend: the model's weights */
  double vae;     /* backend: a decode on it, once the DiT's workspace is freed */
  double vae_weights; /* backend: the VAE's weights, kept from the first decode on */
} mem_need;

/* Mirrors gen_prepare, vdit_dit_ws_new (and vdit_dit_ws_share_prefix), vdit_dit_text_new
 * and vdit_text_encoder_run. */
static void
memory_need (const vdit_ctx *ctx, int frames, mem_need *m)
{
  const vdit_model *model = ctx->model;
  const vdit_config *c = model->config;
  const vdit_dit_config *dc = &c->dit;
  const vdit_text_config *tc = &c->text;
  const double act = ctx->be.act_size, t = tc->max_tokens;
  int grid[3];
  vdit_model_token_grid (model, frames, grid);
  const double n = (double) grid[0] * grid[1] * grid[2], d = dc->hidden;
  const double patch = (double) dc->patch[0] * dc->patch[1] * dc->patch[2] * dc->in_channels;
  const double pairs = dc->head_dim / 2;
  const double values = (double) vdit_model_latent_frames (model, frames) * c->latent_height *
                        c->latent_width * dc->in_channels;
  const double inner = (double) tc->n_heads * tc->d_kv;
  m->tokens = n;
  m->latent = 6.0 * values * sizeof (float);
  m->host = 2.0 * n * pairs * sizeof (float) + (dc->abs_pos ? n * d * sizeof (float) : 0.0) +
            3.0 * c->width * c->height;
  m->acts = n * (2.0 * patch + 7.0 * d + dc->ffn_hidden) * act + /* 7: a guided x kept */
            2.0 * n * pairs * sizeof (float) + (dc->abs_pos ? n * d * act : 0.0) +
            2.0 * dc->depth * t * 2.0 * d * act +
            (tc->n_heads * t * t + t * (2.0 * tc->d_model + 4.0 * inner + 2.0 * tc->d_ff)) * act;
  if (gen_sampler_on_backend (ctx) && ctx->be.iface->host_alloc) /* device memory */
    m->acts += 4.0 * values * sizeof (float); /* latent, both outputs, noise */
  m->weights = (double) model->info.n_params * act;
  m->vae = m->vae_weights = 0.0;
  if (model->vae) { /* the CausalVideoVAE decodes on the backend where it can, else the host */
    const gboolean on_device = vdit_vae_device_supported (&ctx->be);
    uint64_t host, device;
    vdit_vae_decoder_peak_split (model->vae, grid[0] * dc->patch[0], c->latent_height,
                                 c->latent_width, on_device, &host, &device);
    m->host += (double) host;
    m->vae = (double) device;
    m->vae_weights = on_device ? (double) vdit_vae_decoder_weight_bytes (model->vae) : 0.0;
  }
}

/* The host's memory in bytes: physical memory, or less where a cgroup (a container)
 * limits the process. */
static double
host_memory (void)
{
  const long pages = sysconf (_SC_PHYS_PAGES), page = sysconf (_SC_PAGE_SIZE);
  double bytes = pages > 0 && page > 0 ? (double) pages * page : INFINITY;
  static const char *const limits[] = {
    "/sys/fs/cgroup/memory.max",                   /* cgroup v2, namespaced */
    "/sys/fs/cgroup/memory/memory.limit_in_bytes", /* cgroup v1 */
  };
  for (guint i = 0; i < G_N_ELEMENTS (limits); i++) {
    g_autofree char *text = NULL;
    if (g_file_get_contents (limits[i], &text, NULL, NULL)) {
      char *end = NULL;
      const double limit = g_ascii_strtod (text, &end);
      if (end != text && limit > 0) /* "max" = no limit */
        bytes = MIN (bytes, limit);
    }
  }
  return bytes;
}

#define GIB(x) ((x) / (1024.0 * 1024.0 * 1024.0))

/* Refuses a clip of `frames` whose memory estimate exceeds the host's memory (all of it
 * where the backend's buffers are host memory: the CPU) or what the device can still
 * allocate (backends with mem_info: CUDA), before anything is allocated.
 * at_ctx: the check of vdit_ctx_new (the model's shortest clip, weights not loaded yet). */
static gboolean
check_memory (const vdit_ctx *ctx, int frames, gboolean at_ctx, GError **error)
{
  const vdit_config *c = ctx->model->config;
  mem_need m;
  memory_need (ctx, frames, &m);
  /* host_alloc is NULL exactly where buffers already are host memory */
  const gboolean be_on_host = ctx->be.iface->host_alloc == NULL;
  const double need = m.latent + m.host + (be_on_host ? m.acts + m.weights : 0.0);
  const double have = host_memory ();
  if (need > have) {
    g_autofree char *what = at_ctx
      ? g_strdup_printf ("model %s is too large for this host: its shortest clip, %d frames "
                         "of %d×%d, needs", ctx->model->info.name, frames, c->width, c->height)
      : g_strdup_printf ("%d frames of %d×%d need", frames, c->width, c->height);
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "%s about %.1f GiB of host memory (latent %.1f GiB, activations %.1f GiB, "
                 "weights %.1f GiB), more than the host's %.1f GiB%s", what, GIB (need),
                 GIB (m.latent + m.host), be_on_host ? GIB (m.acts) : 0.0,
                 be_on_host ? GIB (m.weights) : 0.0, GIB (have),
                 at_ctx ? "" : ": ask for fewer frames");
    return FALSE;
  }
  /* the device: its activations (and, before the model is loaded, its weights) against
   * what it can still allocate */
  size_t avail = 0, total = 0;
  if (!be_on_host && ctx->be.iface->mem_info &&
      ctx->be.iface->mem_info (ctx->be.context, &avail, &total)) {
    /* the DiT's activations are freed before a VAE decode on the device; the VAE's
     * weights stay from the first decode on (then avail no longer holds them) */
    const double acts = MAX (m.acts, m.vae);
    const double weights = (at_ctx ? m.weights : 0.0) + (ctx->vae ? 0.0 : m.vae_weights);
    const double dev_need = acts + weights;
    if (ctx->te) /* a resident text encoder is let go of when a clip needs its room */
      avail += (size_t) vdit_text_encoder_weight_bytes (&c->text, ctx->be.act_size);
    if (dev_need > (double) avail) {
      g_autofree char *what = at_ctx
        ? g_strdup_printf ("model %s is too large for this device: its shortest clip, %d "
                           "frames of %d×%d, needs", ctx->model->info.name, frames, c->width,
                           c->height)
        : g_strdup_printf ("%d frames of %d×%d need", frames, c->width, c->height);
      g_autofree char *need_s = vdit_size_text (dev_need);
      g_autofree char *acts_s = vdit_size_text (acts), *weights_s = vdit_size_text (weights);
      g_autofree char *avail_s = vdit_size_text (avail), *total_s = vdit_size_text (total);
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                   "%s about %s on the %s device (activations %s, weights %s), more than "
                   "the %s it can still allocate of %s%s", what, need_s,
                   ctx->be.iface->name, acts_s, weights_s, avail_s, total_s,
                   at_ctx ? ": free memory other programs hold on it"
                          : ": ask for fewer frames, or free memory other programs hold on it");
      return FALSE;
    }
  }
  if (m.tokens > G_MAXINT) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "%d frames of %d×%d make %.0f tokens, more than the engine's limit of %d",
                 frames, c->width, c->height, m.tokens, G_MAXINT);
    return FALSE;
  }
  g_debug ("%d frames: about %.2f GiB on the host, %.2f GiB on the %s backend", frames,
           GIB (m.latent + m.host), GIB (m.acts + m.weights), ctx->be.iface->name);
  return TRUE;
}

static gboolean
ctx_init_backend (vdit_ctx *ctx, GError **error)
{
  int cuda_device;
  if (!vdit_ctx_params_check (&ctx->params, &cuda_device, error))
    return FALSE;
  ctx->cuda_device = cuda_device;
  if (cuda_device >= 0)
    return vdit_backend_cuda_init (&ctx->be, cuda_device, error);
  if (!vdit_backend_cpu_init (&ctx->be, ctx->params.threads, error))
    return FALSE;
  /* a cancel stops a long op (a search step's dense pass: seconds) within one task */
  vdit_backend_cpu_set_cancel (&ctx->be, &ctx->cancelled);
  if (ctx->params.log) { /* the host's log (vdit generate -v) says how many threads and why */
    g_autofree char *why = NULL;
    const int usable = vdit_cpu_default_threads (&why);
    g_autofree char *msg = ctx->params.threads > 0
      ? g_strdup_printf ("CPU backend: %d threads as asked (%d by default: %s)",
                         ctx->params.threads, usable, why)
      : g_strdup_printf ("CPU backend: %d threads (%s)", usable, why);
    ctx->params.log (ctx->params.log_user_data, G_LOG_LEVEL_INFO, msg);
  }
  return TRUE;
}

vdit_ctx *
vdit_ctx_new (vdit_model *model, const vdit_ctx_params *params, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (params && params->gpus > 1)
    return vdit_ctx_new_ranks (model, params, params->gpus, error);
  vdit_ctx *ctx = g_new0 (vdit_ctx, 1);
  ctx->model = model;
  if (params)
    ctx->params = *params;
  else
    vdit_ctx_params_init (&ctx->params);
  if (!ctx_init_backend (ctx, error) ||
      !check_memory (ctx, model->info.frame_offset + model->info.frame_multiple, TRUE, error))
    goto fail;
  if (!(ctx->dit = vdit_dit_new (&ctx->be, model->config, model->weights, error)))
    goto fail;
  return ctx;
fail:
  vdit_ctx_free (ctx);
  return NULL;
}

vdit_ctx *
vdit_ctx_new_ranks (vdit_model *model, const vdit_ctx_params *params, int ranks,
                    GError **error)
{
  g_return_val_if_fail (model != NULL && params != NULL && ranks >= 1, NULL);
  int first = -1;
  vdit_ctx_params p0 = *params;
  p0.gpus = params->device == VDIT_DEVICE_CPU ? 1 : ranks; /* CPU ranks: tests */
  if (!vdit_ctx_params_check (&p0, &first, error))
    return NULL;
  p0.gpus = 1;
  if (first >= 0)
    p0.device_id = first;
  vdit_ctx *ctx = vdit_ctx_new (model, &p0, error);
  if (ctx == NULL || ranks == 1)
    return ctx;
  /* every rank's context is made before the first clip: a GPU that cannot start is an
   * error here, not a collective waiting for a rank that never comes */
  if (!(ctx->group = vdit_sp_group_new (model, &p0, ranks, first, error))) {
    vdit_ctx_free (ctx);
    return NULL;
  }
  ctx->comm = vdit_sp_group_comm (ctx->group);
  ctx->exchange = vdit_sp_group_exchange (ctx->group);
  return ctx;
}

int
vdit_ctx_get_ranks (const vdit_ctx *ctx)
{
  return ctx->comm ? vdit_comm_size (ctx->comm) : 1;
}

vdit_model *
vdit_ctx_get_model (vdit_ctx *ctx)
{
  return ctx->model;
}

/* A second context on the weights base uploaded, with a backend of its own: on the CPU
 * its own thread pool and scratch (each takes one caller at a time); on CUDA its own
 * stream, cuBLAS handles and scratch on base's device, where base's weight buffers are
 * valid on any stream. Either way the DiT is a view of base's: nothing is uploaded again.
 * The weights are complete once vdit_dit_new returned (uploads wait for their stream). */
vdit_ctx *
vdit_ctx_new_shared (vdit_ctx *base, vdit_log_cb log, void *log_user_data, GError **error)
{
  g_return_val_if_fail (base != NULL && base->base == NULL, NULL);
  int cuda_device = -1;
  if (base->group) { /* its helpers serve one clip at a time */
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "a context over %d GPUs (gpus) cannot share its weights with another yet: "
                 "use gpus=1, or one process per GPU under mpirun", vdit_comm_size (base->comm));
    return NULL;
  }
  if (base->comm) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "a context of a parallel job cannot share its weights with another");
    return NULL;
  }
  /* the device base runs on: its parameters passed this check when it was made */
  if (!vdit_ctx_params_check (&base->params, &cuda_device, error))
    return NULL;
  vdit_ctx *ctx = g_new0 (vdit_ctx, 1);
  ctx->model = base->model;
  ctx->params = base->params;
  ctx->params.log = log;
  ctx->params.log_user_data = log_user_data;
  ctx->base = base;
  const gboolean ok = cuda_device >= 0
    ? vdit_backend_cuda_init (&ctx->be, cuda_device, error)
    : vdit_backend_cpu_init (&ctx->be, base->params.threads, error);
  if (!ok) {
    g_free (ctx);
    return NULL;
  }
  if (cuda_device < 0)
    vdit_backend_cpu_set_cancel (&ctx->be, &ctx->cancelled);
  ctx->dit = vdit_dit_new_view (base->dit, &ctx->be);
  g_atomic_int_inc (&base->views);
  return ctx;
}

void
vdit_ctx_free (vdit_ctx *ctx)
{
  if (ctx == NULL)
    return;
  /* the views run on base's weights: freeing them first would leave kernels reading freed
   * device memory, so a misordered free leaks instead (and says so) */
  g_return_if_fail (g_atomic_int_get (&ctx->views) == 0);
  vdit_sp_group_free (ctx->group); /* the helpers first: they use the model */
  if (ctx->have_nccl)
    vdit_comm_free (&ctx->nccl);
  vdit_vae_device_free (ctx->vae);
  vdit_text_encoder_free (ctx->te);
  vdit_dit_free (ctx->dit); /* a shared context's is a view: base keeps the weights */
  vdit_backend_free (&ctx->be);
  if (ctx->base)
    g_atomic_int_add (&ctx->base->views, -1);
  g_free (ctx);
}

const char *
vdit_ctx_get_device_name (const vdit_ctx *ctx)
{
  return ctx->be.iface ? ctx->be.iface->name : "none";
}

void
vdit_cancel (vdit_ctx *ctx)
{
  g_atomic_int_set (&ctx->cancelled, 1);
  if (ctx->group) /* the helpers stop too, and rank 0 need not wait for their block */
    vdit_sp_group_cancel (ctx->group, TRUE);
}

void
vdit_reset_cancel (vdit_ctx *ctx)
{
  g_atomic_int_set (&ctx->cancelled, 0);
  if (ctx->group)
    vdit_sp_group_cancel (ctx->group, FALSE);
}

static gboolean
check_cancel (vdit_ctx *ctx, GError **error)
{
  if (g_atomic_int_get (&ctx->cancelled)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED, "generation cancelled");
    return FALSE;
  }
  return TRUE;
}

gboolean
vdit_ctx_set_comm (vdit_ctx *ctx, const vdit_comm *comm, GError **error)
{
  return vdit_ctx_set_comms (ctx, comm, NULL, error);
}

gboolean
vdit_ctx_set_comms (vdit_ctx *ctx, const vdit_comm *comm, const vdit_comm *exchange,
                    GError **error)
{
  if (ctx->group) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "this context already runs over %d ranks of this process (gpus); a parallel "
                 "job gives each rank one device", vdit_comm_size (ctx->comm));
    return FALSE;
  }
  if (comm && vdit_comm_size (comm) > 1 && ctx->params.gpus > 1) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "gpus = %d with %d ranks: each rank of a parallel job drives one device",
                 ctx->params.gpus, vdit_comm_size (comm));
    return FALSE;
  }
  ctx->comm = comm && vdit_comm_size (comm) > 1 ? comm : NULL;
  ctx->exchange = ctx->comm ? exchange : NULL;
  return TRUE;
}

gboolean
vdit_ctx_out_of_step (const vdit_ctx *ctx)
{
  return ctx->out_of_step;
}

/* The rank of this process in the context's job (0 alone). */
static int
ctx_rank (const vdit_ctx *ctx)
{
  return ctx->comm ? vdit_comm_rank (ctx->comm) : 0;
}

/* ---- text ---------------------------------------------------------------------- */

/* Prompt ids + EOS, truncated to max_tokens. Without a tokenizer (random-weight
 * models) bytes stand in for pieces. */
gboolean
vdit_ctx_tokenize (vdit_ctx *ctx, const char *text, int32_t **ids, int *n, GError **error)
{
  const vdit_text_config *tc = &ctx->model->config->text;
  int32_t *raw = NULL;
  int n_raw = 0;
  if (ctx->model->tokenizer) {
    if (!vdit_tokenizer_encode (ctx->model->tokenizer, text, &raw, &n_raw, error))
      return FALSE;
  } else {
    /* ids 0..2 are reserved (pad, EOS, unknown): bytes map onto 3..vocab_size−1 */
    if (tc->vocab_size < 4) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                   "text_encoder.vocab_size = %d: a model without tokenizer.model needs at "
                   "least 4 ids to stand bytes in for pieces", tc->vocab_size);
      return FALSE;
    }
    n_raw = strlen (text);
    raw = g_new (int32_t, MAX (n_raw, 1));
    for (int i = 0; i < n_raw; i++)
      raw[i] = 3 + ((uint8_t) text[i]) % (tc->vocab_size - 3);
  }
  int keep = MIN (n_raw, tc->max_tokens - 1);
  if (keep < n_raw && ctx->params.log) { /* as Open-Sora-Plan's pipeline warns */
    g_autofree char *msg = g_strdup_printf (
      "the prompt has %d tokens: only the first %d and the end-of-text token are used "
      "(text_encoder.max_tokens = %d)", n_raw + 1, keep, tc->max_tokens);
    ctx->params.log (ctx->params.log_user_data, G_LOG_LEVEL_WARNING, msg);
  }
  *ids = g_new (int32_t, keep + 1);
  memcpy (*ids, raw, keep * sizeof (int32_t));
  (*ids)[keep] = EOS_ID;
  *n = keep + 1;
  g_free (raw);
  return TRUE;
}

/* Text embeddings and their projected cross-attention K/V for one prompt. */
static vdit_dit_text *
encode_prompt (vdit_ctx *ctx, vdit_text_encoder *te, const char *text, GError **error)
{
  vdit_backend *be = &ctx->be;
  g_autofree int32_t *ids = NULL;
  int n = 0;
  if (!vdit_ctx_tokenize (ctx, text, &ids, &n, error))
    return NULL;
  void *emb = be->iface->alloc (be->context, (size_t) n * ctx->model->config->text.d_model,
                                VDIT_ELEM_ACT, error);
  if (emb == NULL)
    return NULL;
  vdit_dit_text *t = NULL;
  /* in a parallel job rank 0 encodes (te is NULL elsewhere) and the others receive the
   * embeddings */
  gboolean ok = ctx_rank (ctx) != 0 || vdit_text_encoder_run (te, ids, n, emb, error);
  if (ok && ctx->comm)
    ok = vdit_sp_broadcast_act (ctx->comm, be, emb,
                                (size_t) n * ctx->model->config->text.d_model, error);
  if (ok)
    t = vdit_dit_text_new (ctx->dit, emb, n, error);
  be->iface->release (be->context, emb);
  return t;
}

/* ---- generation ---------------------------------------------------------------- */

typedef struct {
  int frames, steps;
  float guidance;
  VditAttention attention;
  float sparsity;
} resolved_params;

static gboolean
resolve_params (vdit_ctx *ctx, const vdit_gen_params *p, resolved_params *r, GError **error)
{
  const vdit_model *m = ctx->model;
  if (p->prompt == NULL || *p->prompt == '\0' || !g_utf8_validate (p->prompt, -1, NULL)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 p->prompt && *p->prompt ? "prompt is not valid UTF-8" : "prompt is empty");
    return FALSE;
  }
  if (p->negative_prompt && !g_utf8_validate (p->negative_prompt, -1, NULL)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "negative prompt is not valid UTF-8");
    return FALSE;
  }
  r->frames = p->frames > 0 ? p->frames : m->info.frames;
  r->steps = p->steps > 0 ? p->steps : m->info.steps;
  r->guidance = p->guidance == VDIT_GUIDANCE_DEFAULT ? m->info.guidance : p->guidance;
  r->attention = p->attention == VDIT_ATTENTION_DEFAULT ? m->config->attention.mode : p->attention;
  r->sparsity = p->sparsity;
  if (p->frames < 0) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "frames = %d must be positive", p->frames);
    return FALSE;
  }
  if (!vdit_model_check_frames (m, r->frames, error))
    return FALSE;
  if (p->steps < 0 || r->steps > 10000) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "steps = %d is out of range (1..10000)",
                 p->steps);
    return FALSE;
  }
  /* one rule: -1 = the model's; 0 ≤ g ≤ 1 disables guidance; 1 < g ≤ 100 guides; any
   * other value (another negative one, NaN, ±inf) is an error, never the default */
  if (!(r->guidance >= 0.0f && r->guidance <= VDIT_GUIDANCE_MAX)) {
    if (p->guidance == VDIT_GUIDANCE_DEFAULT)
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "the model's default guidance = %g (sampler.guidance) is out of range "
                   "(0 to %g): pass a guidance scale", r->guidance, VDIT_GUIDANCE_MAX);
    else
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "guidance = %g is out of range: 0 to %g (0 to 1 disables guidance), or "
                   "-1 for the model's default", r->guidance, VDIT_GUIDANCE_MAX);
    return FALSE;
  }
  if (r->attention < VDIT_ATTENTION_FULL || r->attention > VDIT_ATTENTION_ADAPTIVE) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "attention mode %d is unknown", r->attention);
    return FALSE;
  }
  if (!(r->sparsity < 1.0f) || (r->sparsity >= 0 && !isfinite (r->sparsity))) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "sparsity = %g must be below 1",
                 r->sparsity);
    return FALSE;
  }
  return TRUE;
}

typedef struct {
  vdit_ctx *ctx;
  const vdit_gen_params *p;
  resolved_params r;
  int T, gt, gh, gw;
  size_t n_latent, n_tokens_values;
  float *latent, *scaled, *patches, *out_cond, *out_uncond, *noise;
  vdit_dit_text *text[2];
  vdit_dit_ws *ws;
  vdit_ulysses *sp; /* with ctx->comm: this rank's tokens and heads */
  float *rows_out;  /* with sp: this rank's rows of a forward's output */
  vdit_sampler *sampler;
  vdit_attn_policy *policy;
  vdit_attn_policy *external; /* the caller's policy (mask search), not freed here */
  /* the sampler on the backend (gen_sampler_on_backend): the latent, both model outputs
   * and the noise as F32 backend buffers; latent and noise above are host staging */
  gboolean on_backend;
  float *be_latent, *be_cond, *be_uncond, *be_noise;
  void *graph;          /* a step's forwards recorded (backend graph slots), replayed */
  gboolean graph_tried; /* recorded once: a failure is not tried again */
  int graph_launches;   /* steps whose forwards ran from the graph */
  int graph_step;       /* the step recorded */
  gboolean bench;       /* vdit_bench_dit_step: the memory timed is the step's alone */
} gen_state;

static void
gen_backend_buffers_free (gen_state *g)
{
  vdit_backend *be = &g->ctx->be;
  if (g->graph)
    be->iface->graph_free (be->context, g->graph);
  g->graph = NULL;
  float **bufs[] = { &g->be_latent, &g->be_cond, &g->be_uncond, &g->be_noise };
  for (guint i = 0; i < G_N_ELEMENTS (bufs); i++) {
    if (*bufs[i])
      be->iface->release (be->context, *bufs[i]);
    *bufs[i] = NULL;
  }
}

static void
gen_state_clear (gen_state *g)
{
  vdit_dit *dit = g->ctx->dit;
  vdit_dit_text_free (dit, g->text[0]);
  vdit_dit_text_free (dit, g->text[1]);
  vdit_dit_ws_free (dit, g->ws);
  vdit_ulysses_free (g->sp);
  g_free (g->rows_out);
  vdit_sampler_free (g->sampler);
  if (g->policy && g->policy != g->external)
    vdit_attn_policy_free (g->policy);
  g_free (g->latent);
  g_free (g->scaled);
  g_free (g->patches);
  g_free (g->out_cond);
  g_free (g->out_uncond);
  g_free (g->noise);
  gen_backend_buffers_free (g);
}

static void
report (const gen_state *g, VditStage stage, int step, int steps)
{
  if (g->p->progress)
    g->p->progress (g->p->user_data, stage, step, steps);
}

/* dst(n_latent) = the normals of noise stream `stream`, in stretches with a look at the
 * cancel flag between them: a 4096-frame latent of the tiny model takes 0.1 s. */
static gboolean
gen_noise (gen_state *g, float *dst, uint32_t stream, GError **error)
{
  const size_t stretch = (size_t) 1 << 20;
  for (size_t i = 0; i < g->n_latent; i += stretch) {
    if (!check_cancel (g->ctx, error))
      return FALSE;
    vdit_philox_normal (dst + i, MIN (stretch, g->n_latent - i), g->p->seed, stream, i);
  }
  return TRUE;
}

/* Before any step: a causal_video_vae model without the VAE's weights (a config.json
 * alone, random weights) could denoise but never decode. */
static gboolean
gen_check_decoder (const vdit_model *m, GError **error)
{
  if (m->config->decoder != VDIT_DECODER_CAUSAL_VIDEO_VAE || m->vae != NULL)
    return TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING,
               "model %s has no VAE weights: random-weight models cannot decode "
               "causal_video_vae latents (vdit bench step times their DiT)", m->info.name);
  return FALSE;
}

/* Whether the text encoder, on the device now, may stay there beside a clip of `frames`:
 * on a device (not host memory) whose free memory leaves this clip's activations (or its
 * VAE decode) room, in a context that owns its weights (a view's generations would
 * otherwise count memory its base holds). */
static gboolean
keep_text_encoder (const vdit_ctx *ctx, int frames)
{
  const vdit_backend_i *f = ctx->be.iface;
  size_t avail = 0, total = 0;
  if (f->host_alloc == NULL || f->mem_info == NULL || ctx->base != NULL ||
      g_atomic_int_get (&ctx->views) > 0 || !f->mem_info (ctx->be.context, &avail, &total))
    return FALSE;
  mem_need m;
  memory_need (ctx, frames, &m);
  const double margin = 0.05 * (double) total; /* what the pool and fragmentation take */
  /* what check_memory asks of a clip once the model is loaded */
  const double need = MAX (m.acts, m.vae) + (ctx->vae ? 0.0 : m.vae_weights);
  return (double) avail >= need + margin;
}

static gboolean
gen_prepare (gen_state *g, GError **error)
{
  vdit_ctx *ctx = g->ctx;
  const vdit_config *cfg = ctx->model->config;
  int grid[3];
  if (!gen_check_decoder (ctx->model, error))
    return FALSE;
  g->T = vdit_model_latent_frames (ctx->model, g->r.frames);
  vdit_model_token_grid (ctx->model, g->r.frames, grid);
  g->gt = grid[0];
  g->gh = grid[1];
  g->gw = grid[2];
  g->n_latent = (size_t) g->T * cfg->latent_height * cfg->latent_width * cfg->dit.in_channels;
  g->on_backend = gen_sampler_on_backend (ctx);
  g->latent = g_try_new (float, g->n_latent);
  g->noise = g_try_new (float, g->n_latent);
  if (!g->on_backend) { /* the host's working copies */
    g->scaled = g_try_new (float, g->n_latent);
    g->patches = g_try_new (float, g->n_latent);
    g->out_cond = g_try_new (float, g->n_latent);
    g->out_uncond = g_try_new (float, g->n_latent);
  }
  if (!g->latent || !g->noise ||
      (!g->on_backend && (!g->scaled || !g->patches || !g->out_cond || !g->out_uncond))) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "out of host memory for a latent of %zu values", g->n_latent);
    return FALSE;
  }
  if (!(g->sampler = vdit_sampler_new (&cfg->sampler, g->r.steps, error)))
    return FALSE;

  /* The text encoder goes to the backend for the prompts; it stays there for the next
   * generation only where that leaves the device room for this clip (keep_text_encoder):
   * its weights (11 GiB for mT5-XXL) take a second or more to upload. One resident
   * before a failed encoding stays as it was (the failure was this prompt's buffers);
   * the device keeps no more than before the failed run. In a parallel job only rank 0
   * loads it. */
  report (g, VDIT_STAGE_ENCODE_TEXT, 0, 2);
  vdit_text_encoder *te = ctx->te;
  const gboolean was_resident = te != NULL;
  ctx->te = NULL;
  if (te == NULL && ctx_rank (ctx) == 0)
    te = vdit_text_encoder_new (&ctx->be, &cfg->text, ctx->model->weights, error);
  gboolean encoded = (te != NULL || ctx_rank (ctx) != 0) &&
                     (g->text[0] = encode_prompt (ctx, te, g->p->prompt, error)) != NULL &&
                     check_cancel (ctx, error);
  if (encoded && g->r.guidance > 1.0f) {
    const char *neg = g->p->negative_prompt ? g->p->negative_prompt : "";
    encoded = (g->text[1] = encode_prompt (ctx, te, neg, error)) != NULL;
  }
  if (te && !g->bench && (encoded || was_resident) && keep_text_encoder (ctx, g->r.frames))
    ctx->te = te;
  else
    vdit_text_encoder_free (te);
  if (!encoded)
    return FALSE;
  report (g, VDIT_STAGE_ENCODE_TEXT, 2, 2);

  /* every activation of the DiT is allocated here, before the sampling loop, so running
   * out of device memory is reported before it starts, with the numbers */
  if (ctx->comm) {
    const size_t patch = (size_t) cfg->dit.patch[0] * cfg->dit.patch[1] * cfg->dit.patch[2] *
                         cfg->dit.in_channels;
    if (g->external) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "the mask search runs on one rank, not on %d", vdit_comm_size (ctx->comm));
      return FALSE;
    }
    /* processes (MPI) agree on their exchange each clip, as a rank may have a new
     * context; in-process ranks and a caller's exchange communicator are set already */
    const gboolean choose = !vdit_comm_is_threads (ctx->comm) &&
                            (ctx->exchange == NULL || ctx->exchange == &ctx->nccl);
    if (choose && !vdit_sp_exchange_choose (ctx->comm, ctx->cuda_device, &ctx->nccl,
                                            &ctx->have_nccl, &ctx->exchange, error))
      return FALSE;
    if (!(g->sp = vdit_ulysses_new (&ctx->be, ctx->comm, ctx->exchange, g->gt * g->gh * g->gw,
                                    cfg->dit.heads, cfg->dit.head_dim, error)) ||
        !(g->ws = vdit_dit_ws_new_shared (ctx->dit, g->gt, g->gh, g->gw, g->sp, error)))
      return FALSE;
    g->rows_out = g_new (float, vdit_ulysses_tokens (g->sp) * patch);
  } else if (!(g->ws = vdit_dit_ws_new (ctx->dit, g->gt, g->gh, g->gw, error))) {
    return FALSE;
  }
  /* guided: the unconditional pass starts where the conditional one's block-0
   * self-attention left off (a caller's policy sees every pass of every layer instead).
   * VDIT_GUIDED_PREFIX=0 turns it off to time the difference, in one process only: ranks
   * must agree, as it decides which all-to-alls they make. */
  const gboolean prefix_off = ctx->comm == NULL &&
                              g_strcmp0 (g_getenv ("VDIT_GUIDED_PREFIX"), "0") == 0;
  if (g->text[1] && g->external == NULL && !prefix_off &&
      !vdit_dit_ws_share_prefix (ctx->dit, g->ws, error))
    return FALSE;
  if (g->on_backend) {
    float **bufs[] = { &g->be_latent, &g->be_cond, &g->be_uncond, &g->be_noise };
    for (guint i = 0; i < G_N_ELEMENTS (bufs); i++)
      if (!(*bufs[i] = ctx->be.iface->alloc (ctx->be.context, g->n_latent, VDIT_ELEM_F32, error)))
        return FALSE;
  }

  if (g->external) {
    /* the policy's attention covers its own token count: it must be this clip's */
    if (vdit_attn_policy_tokens (g->external) != g->gt * g->gh * g->gw) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "the attention policy is for %d tokens, the clip has %d",
                   vdit_attn_policy_tokens (g->external), g->gt * g->gh * g->gw);
      return FALSE;
    }
    g->policy = g->external;
  } else if (g->r.attention != VDIT_ATTENTION_FULL) {
    vdit_attn_policy_params pp = {
      .mode = g->r.attention,
      .frames = g->gt,
      .tokens_per_frame = g->gh * g->gw,
      .depth = cfg->dit.depth,
      .heads = g->sp ? vdit_ulysses_heads (g->sp) : cfg->dit.heads,
      .head_dim = cfg->dit.head_dim,
      .steps = g->r.steps,
      .sparsity = g->r.sparsity,
      .cancel = &ctx->cancelled,
    };
    if (!(g->policy = vdit_attn_policy_new (&ctx->be, cfg, &pp, error)) ||
        (g->sp && !vdit_attn_policy_share_heads (g->policy, ctx->comm, cfg->dit.heads, error)))
      return FALSE;
  }
  if (!gen_noise (g, g->latent, 0, error))
    return FALSE;
  const float s0 = vdit_sampler_init_sigma (g->sampler);
  if (!isfinite (s0)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_NOT_FINITE,
                 "the latent became NaN/inf at step 0 (initial sigma = %g): the sampler "
                 "settings are broken", s0);
    return FALSE;
  }
  for (size_t i = 0; i < g->n_latent; i++)
    g->latent[i] *= s0;
  return !g->on_backend || ctx->be.iface->upload (ctx->be.context, g->be_latent, g->latent,
                                                  g->n_latent, VDIT_ELEM_F32, error);
}

/* Index of the first NaN or ±inf of x(n), or n: one pass of integer tests (all-ones
 * exponent), which vectorises, then a search only in a bad stretch. */
static size_t
first_non_finite (const float *x, size_t n)
{
  const size_t stretch = 16384;
  for (size_t i0 = 0; i0 < n; i0 += stretch) {
    const size_t i1 = MIN (n, i0 + stretch);
    uint32_t bad = 0;
    for (size_t i = i0; i < i1; i++) {
      uint32_t bits;
      memcpy (&bits, &x[i], sizeof bits);
      bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    if (bad) {
      for (size_t i = i0; i < i1; i++)
        if (!isfinite (x[i]))
          return i;
    }
  }
  return n;
}

/* After step k (1-based): a NaN or inf never heals and would decode to a grey clip. On
 * the host path the latent is on the host after every step, so this costs one pass;
 * with the latent on the backend check_latent_backend looks there first. */
static gboolean
check_latent (const gen_state *g, int step, GError **error)
{
  const size_t i = first_non_finite (g->latent, g->n_latent);
  if (G_LIKELY (i == g->n_latent))
    return TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_NOT_FINITE,
               "the latent became NaN/inf at step %d of %d (value %zu is %g): the weights or "
               "sampler settings are broken", step, g->r.steps, i, g->latent[i]);
  return FALSE;
}

/* One forward of g->patches into g->scaled (tokens, P·C); in a parallel job each rank
 * computes its tokens' rows and every rank gathers them all. */
static gboolean
gen_forward (gen_state *g, int k, float tau, int pass, GError **error)
{
  vdit_ctx *ctx = g->ctx;
  if (g->sp == NULL)
    return vdit_dit_forward (ctx->dit, g->ws, g->patches, tau, g->text[pass], g->policy, k,
                             pass, g->scaled, &ctx->cancelled, error);
  const vdit_dit_config *dc = &ctx->model->config->dit;
  const int patch = dc->patch[0] * dc->patch[1] * dc->patch[2] * dc->in_channels;
  return vdit_dit_forward (ctx->dit, g->ws,
                           g->patches + (size_t) vdit_ulysses_token0 (g->sp) * patch, tau,
                           g->text[pass], g->policy, k, pass, g->rows_out, &ctx->cancelled,
                           error) &&
         vdit_ulysses_gather_rows (g->sp, g->rows_out, g->scaled, patch, error);
}

/* One model evaluation of the latent at step k: out_cond, guided if needed. */
static gboolean
gen_model_eval (gen_state *g, int k, GError **error)
{
  vdit_ctx *ctx = g->ctx;
  const vdit_config *cfg = ctx->model->config;
  const float in_scale = vdit_sampler_input_scale (g->sampler, k);
  const float tau = vdit_sampler_timestep (g->sampler, k);
  for (size_t i = 0; i < g->n_latent; i++)
    g->scaled[i] = g->latent[i] * in_scale;
  vdit_patchify (g->patches, g->scaled, g->T, cfg->latent_height, cfg->latent_width,
                 cfg->dit.in_channels, cfg->dit.patch);
  if (!gen_forward (g, k, tau, 0, error))
    return FALSE;
  vdit_unpatchify (g->out_cond, g->scaled, g->T, cfg->latent_height, cfg->latent_width,
                   cfg->dit.in_channels, cfg->dit.patch);
  if (g->text[1] == NULL)
    return TRUE;
  if (!gen_forward (g, k, tau, 1, error))
    return FALSE;
  vdit_unpatchify (g->out_uncond, g->scaled, g->T, cfg->latent_height, cfg->latent_width,
                   cfg->dit.in_channels, cfg->dit.patch);
  const float w = g->r.guidance;
  for (size_t i = 0; i < g->n_latent; i++)
    g->out_cond[i] = g->out_uncond[i] + w * (g->out_cond[i] - g->out_uncond[i]);
  return TRUE;
}

/* ---- the sampler on the backend ---------------------------------------------------- */

/* Step k's forwards from the patches in the workspace's input: the conditional output
 * into be_cond, the unconditional one into be_uncond, as latents. Queued only. */
static gboolean
gen_queue_forwards (gen_state *g, int k, GError **error)
{
  vdit_ctx *ctx = g->ctx;
  const vdit_config *cfg = ctx->model->config;
  for (int pass = 0; pass < (g->text[1] ? 2 : 1); pass++) {
    if (!vdit_dit_forward_queued (ctx->dit, g->ws, g->text[pass], g->policy, k, pass,
                                  &ctx->cancelled, error))
      return FALSE;
    ctx->be.iface->unpatchify (ctx->be.context, pass ? g->be_uncond : g->be_cond,
                               vdit_dit_ws_output (g->ws), g->T, cfg->latent_height,
                               cfg->latent_width, cfg->dit.in_channels, cfg->dit.patch);
  }
  return TRUE;
}

/* Graphs where the backend records them and every step queues the same work: from the
 * second step on (the first makes the layouts, GEMM plans and scratch that a recording
 * must not make), unless the breakdown's timing table stands in front of the backend. */
static gboolean
gen_graphs_possible (const gen_state *g)
{
  const vdit_backend_i *f = g->ctx->be.iface;
  return f->graph_begin && f->graph_end && f->graph_launch && f->graph_free &&
         (g->policy == NULL || vdit_attn_policy_replayable (g->policy));
}

/* Step k's forwards: replayed from the graph, recorded into one at the second step, or
 * queued op by op (the first step, backends without graphs, a recording that failed). */
static gboolean
gen_run_forwards (gen_state *g, int k, GError **error)
{
  vdit_backend *be = &g->ctx->be;
  const vdit_backend_i *f = be->iface;
  if (g->graph == NULL && k > 0 && !g->graph_tried && gen_graphs_possible (g)) {
    g->graph_tried = TRUE;
    if (f->graph_begin (be->context)) {
      GError *err = NULL;
      const gboolean queued = gen_queue_forwards (g, k, &err);
      g->graph = f->graph_end (be->context);
      if (!queued) {
        if (g->graph)
          f->graph_free (be->context, g->graph);
        g->graph = NULL;
        if (g_error_matches (err, VDIT_ERROR, VDIT_ERROR_CANCELLED)) {
          g_propagate_error (error, err);
          return FALSE;
        }
        /* nothing recorded ran: the same forwards op by op, which report a real
         * failure themselves */
        g_debug ("step %d: recording its forwards failed (%s); they run op by op", k + 1,
                 err ? err->message : "no message");
        g_clear_error (&err);
      }
      g->graph_step = k;
      if (g->graph == NULL)
        g_debug ("step %d: its forwards could not be recorded as a graph; they run op by op",
                 k + 1);
    }
  }
  if (g->graph == NULL)
    return gen_queue_forwards (g, k, error);
  f->graph_launch (be->context, g->graph);
  g->graph_launches++;
  return TRUE;
}

/* Step k with the latent on the backend: noise (made on the host, the same numbers as
 * ever) and the timestep go up, then patches, forwards, guidance and the update are
 * queued; only the finiteness check (check_latent_backend) waits for them. */
static gboolean
gen_step_backend (gen_state *g, int k, GError **error)
{
  vdit_ctx *ctx = g->ctx;
  vdit_backend *be = &ctx->be;
  const vdit_backend_i *f = be->iface;
  const vdit_config *cfg = ctx->model->config;
  const float *noise = NULL;
  if (vdit_sampler_needs_noise (g->sampler, k)) {
    if (!gen_noise (g, g->noise, 1 + k, error) ||
        !f->upload (be->context, g->be_noise, g->noise, g->n_latent, VDIT_ELEM_F32, error))
      return FALSE;
    noise = g->be_noise;
  }
  if (!vdit_dit_set_timestep (ctx->dit, g->ws, vdit_sampler_timestep (g->sampler, k), error))
    return FALSE;
  f->patchify (be->context, vdit_dit_ws_input (g->ws), g->be_latent,
               vdit_sampler_input_scale (g->sampler, k), g->T, cfg->latent_height,
               cfg->latent_width, cfg->dit.in_channels, cfg->dit.patch);
  if (!gen_run_forwards (g, k, error))
    return FALSE;
  vdit_sampler_update u;
  vdit_sampler_get_update (g->sampler, k, &u);
  f->sampler_update (be->context, g->be_latent, g->be_cond, g->text[1] ? g->be_uncond : NULL,
                     g->r.guidance, noise, &u, g->n_latent);
  return TRUE;
}

/* check_latent for the latent on the backend: one reduction there (which waits for the
 * step and reports the backend's failures); the message's index and value come from
 * the host's look at a copy. */
static gboolean
check_latent_backend (gen_state *g, int step, GError **error)
{
  vdit_backend *be = &g->ctx->be;
  gboolean finite = TRUE;
  if (!be->iface->all_finite (be->context, g->be_latent, g->n_latent, &finite, error))
    return FALSE;
  return finite ||
         (be->iface->download (be->context, g->latent, g->be_latent, g->n_latent,
                               VDIT_ELEM_F32, error) &&
          check_latent (g, step, error));
}

/* After the last step: the latent to the host for a caller that wants it and for
 * decoders that read it there. */
static gboolean
gen_latent_to_host (gen_state *g, GError **error)
{
  vdit_backend *be = &g->ctx->be;
  return be->iface->download (be->context, g->latent, g->be_latent, g->n_latent, VDIT_ELEM_F32,
                              error);
}

/* One decoded frame's bytes to the host, and the progress report. */
static gboolean
gen_emit_frame (gen_state *g, int f, const uint8_t *rgb, GError **error)
{
  const vdit_config *cfg = g->ctx->model->config;
  if (!check_cancel (g->ctx, error)) /* the frame may be undefined (cpu_set_cancel) */
    return FALSE;
  if (g->p->on_frame && !g->p->on_frame (g->p->user_data, f, g->r.frames, rgb, cfg->width,
                                         cfg->height, cfg->width * 3)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED, "generation stopped by the frame callback");
    return FALSE;
  }
  report (g, VDIT_STAGE_DECODE, f + 1, g->r.frames);
  return TRUE;
}

/* decoder.type causal_video_vae: each temporal chunk's frames, as bytes, as soon as the
 * VAE has decoded them. */
static gboolean
gen_vae_frames (void *user_data, int first, int n, const float *frames, GError **error)
{
  gen_state *g = user_data;
  const vdit_config *cfg = g->ctx->model->config;
  const size_t frame_values = (size_t) cfg->width * cfg->height * 3;
  g_autofree uint8_t *rgb = g_new (uint8_t, frame_values);
  for (int i = 0; i < n; i++) {
    if (!check_cancel (g->ctx, error))
      return FALSE;
    vdit_vae_rgb (rgb, frames + i * frame_values, frame_values);
    if (!gen_emit_frame (g, first + i, rgb, error))
      return FALSE;
  }
  return check_cancel (g->ctx, error);
}

/* The CausalVideoVAE on the context's backend when it has the VAE's layers (CUDA), after
 * the DiT's workspace and prompts are freed to make room; else on the host. */
static gboolean
gen_vae_decode (gen_state *g, GError **error)
{
  vdit_ctx *ctx = g->ctx;
  const vdit_model *m = ctx->model;
  const vdit_config *cfg = m->config;
  if (g->on_backend && !gen_latent_to_host (g, error))
    return FALSE;
  gen_backend_buffers_free (g);
  if (vdit_vae_device_supported (&ctx->be)) {
    vdit_dit_ws_free (ctx->dit, g->ws);
    vdit_dit_text_free (ctx->dit, g->text[0]);
    vdit_dit_text_free (ctx->dit, g->text[1]);
    g->ws = NULL;
    g->text[0] = g->text[1] = NULL;
    if (ctx->vae == NULL && !(ctx->vae = vdit_vae_device_new (m->vae, &ctx->be, error)))
      return FALSE;
  }
  return vdit_vae_decode_stream_on (m->vae, ctx->vae, g->latent, g->T, cfg->latent_height,
                                    cfg->latent_width, gen_vae_frames, g, error);
}

/* The latent's frames decoded where it lives (decode_rgb reads the plain latent as
 * tokens of patch 1 × 1 × 1), each frame's bytes copied into page-locked memory where
 * the backend has it. */
static gboolean
gen_decode_backend (gen_state *g, GError **error)
{
  const vdit_config *cfg = g->ctx->model->config;
  vdit_backend *be = &g->ctx->be;
  const vdit_backend_i *f = be->iface;
  const size_t bytes = (size_t) cfg->width * 3 * cfg->height;
  static const int plain[3] = { 1, 1, 1 };
  uint8_t *rgb = f->host_alloc ? f->host_alloc (be->context, bytes, error) : g_malloc (bytes);
  if (rgb == NULL)
    return FALSE;
  gboolean ok = TRUE;
  for (int fr = 0; ok && fr < g->r.frames; fr++) {
    ok = check_cancel (g->ctx, error);
    if (!ok)
      break;
    f->decode_rgb (be->context, rgb, g->be_latent, VDIT_ELEM_F32, fr, 1, cfg->height,
                   cfg->width, plain);
    ok = f->sync (be->context, error) && gen_emit_frame (g, fr, rgb, error);
  }
  if (f->host_alloc)
    f->host_free (be->context, rgb);
  else
    g_free (rgb);
  return ok;
}

static gboolean
gen_decode (gen_state *g, GError **error)
{
  const vdit_model *m = g->ctx->model;
  const vdit_config *cfg = m->config;
  if (ctx_rank (g->ctx) != 0) /* rank 0 decodes and hands out the frames */
    return TRUE;
  report (g, VDIT_STAGE_DECODE, 0, g->r.frames); /* before the VAE, which takes a while */
  if (cfg->decoder == VDIT_DECODER_CAUSAL_VIDEO_VAE)
    return gen_vae_decode (g, error);
  if (g->on_backend)
    return gen_decode_backend (g, error);
  g_autofree uint8_t *rgb = g_new (uint8_t, (size_t) cfg->width * 3 * cfg->height);
  for (int f = 0; f < g->r.frames; f++) {
    if (!check_cancel (g->ctx, error))
      return FALSE;
    vdit_decode_frame (cfg, g->latent, f, rgb);
    if (!gen_emit_frame (g, f, rgb, error))
      return FALSE;
  }
  return TRUE;
}

gboolean
vdit_gen_params_check (vdit_ctx *ctx, const vdit_gen_params *p, GError **error)
{
  g_return_val_if_fail (ctx != NULL && p != NULL, FALSE);
  resolved_params r;
  return resolve_params (ctx, p, &r, error) && check_memory (ctx, r.frames, FALSE, error);
}

gboolean
vdit_generate (vdit_ctx *ctx, const vdit_gen_params *p, GError **error)
{
  return vdit_generate_latent (ctx, p, NULL, error);
}

gboolean
vdit_generate_latent (vdit_ctx *ctx, const vdit_gen_params *p, float *latent_out, GError **error)
{
  return vdit_generate_with_policy (ctx, p, NULL, latent_out, error);
}

vdit_backend *
vdit_ctx_get_backend (vdit_ctx *ctx)
{
  return &ctx->be;
}

gboolean
vdit_generate_with_policy (vdit_ctx *ctx, const vdit_gen_params *p, vdit_attn_policy *policy,
                           float *latent_out, GError **error)
{
  g_return_val_if_fail (ctx != NULL && p != NULL, FALSE);
  gen_state g = { .ctx = ctx, .p = p, .external = policy };
  gboolean ok = FALSE, in_job = FALSE;
  if (!resolve_params (ctx, p, &g.r, error) || !check_memory (ctx, g.r.frames, FALSE, error) ||
      !check_cancel (ctx, error))
    goto out;
  if (ctx->out_of_step) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "an earlier clip failed part-way, and the other ranks of the parallel job "
                 "are out of step: restart the job");
    goto out;
  }
  /* in-process ranks come back in step after a broken clip */
  if (ctx->group) {
    if (!vdit_sp_group_recover (ctx->group, error))
      goto out;
    ctx->exchange = vdit_sp_group_exchange (ctx->group);
  }
  /* rank 0 hands the generation to the other ranks (vdit_worker_serve) */
  if (ctx->comm && ctx_rank (ctx) == 0 &&
      !vdit_sp_job_send (ctx->comm, ctx->model->info.path, p, error))
    goto out;
  in_job = ctx->comm != NULL;
  if (!gen_prepare (&g, error))
    goto out;
  report (&g, VDIT_STAGE_DENOISE, 0, g.r.steps); /* the stage starts: a clock sees it */
  for (int k = 0; k < g.r.steps && g.on_backend; k++) {
    if (!check_cancel (ctx, error) || !gen_step_backend (&g, k, error) ||
        !check_cancel (ctx, error) || !check_latent_backend (&g, k + 1, error))
      goto out;
    report (&g, VDIT_STAGE_DENOISE, k + 1, g.r.steps);
  }
  for (int k = 0; k < g.r.steps && !g.on_backend; k++) {
    if (!check_cancel (ctx, error) || !gen_model_eval (&g, k, error))
      goto out;
    const float *noise = NULL;
    if (vdit_sampler_needs_noise (g.sampler, k)) {
      if (!gen_noise (&g, g.noise, 1 + k, error))
        goto out;
      noise = g.noise;
    }
    vdit_sampler_step (g.sampler, k, g.latent, g.out_cond, noise, g.n_latent);
    /* a cancel during the step may have left its ops' outputs undefined */
    if (!check_cancel (ctx, error) || !check_latent (&g, k + 1, error))
      goto out;
    report (&g, VDIT_STAGE_DENOISE, k + 1, g.r.steps);
  }
  in_job = FALSE; /* the other ranks are done: rank 0 decodes alone */
  if (latent_out && g.on_backend && !gen_latent_to_host (&g, error))
    goto out;
  if (latent_out)
    memcpy (latent_out, g.latent, g.n_latent * sizeof (float));
  ok = gen_decode (&g, error);
out:
  if (in_job && !ok && ctx->group) {
    /* the helpers leave the clip now; a cancel is reported as such, whatever a helper
     * said first */
    vdit_sp_group_fail (ctx->group, error && *error ? (*error)->message : "rank 0 failed");
    if (error && *error && g_atomic_int_get (&ctx->cancelled) &&
        !g_error_matches (*error, VDIT_ERROR, VDIT_ERROR_CANCELLED)) {
      g_clear_error (error);
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_CANCELLED, "generation cancelled");
    }
    /* back in step before returning: no rank still works on the failed clip (when one
     * does not leave it in time, the next clip tries again) */
    vdit_sp_group_recover (ctx->group, NULL);
  } else if (in_job && !ok && !vdit_comm_is_threads (ctx->comm)) {
    /* processes cannot be brought back in step; in-process helpers are (above) */
    ctx->out_of_step = TRUE;
  }
  gen_state_clear (&g);
  return ok;
}

/* ---- benchmark --------------------------------------------------------------------- */

gboolean
vdit_bench_dit_step (vdit_ctx *ctx, const vdit_bench_step_params *params,
                     vdit_bench_step_result *result, GError **error)
{
  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a benchmark prompt";
  p.frames = params->frames;
  p.attention = params->attention;
  /* one pass per step unless guided: then both passes, as a generation runs them */
  p.guidance = params->guidance > 1.0f ? params->guidance : 0.0f;
  p.negative_prompt = params->negative_prompt;
  p.steps = MAX (params->repeat + params->warmup, 1);
  gen_state g = { .ctx = ctx, .p = &p, .bench = TRUE };
  vdit_backend *be = &ctx->be;
  vdit_backend_timing *timing = NULL;
  if (ctx->group) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "bench step over %d GPUs of one process is not available yet: run one "
                 "process per GPU under mpirun", vdit_comm_size (ctx->comm));
    return FALSE;
  }
  gboolean ok = FALSE;
  double total = 0.0, best = G_MAXDOUBLE;
  *result = (vdit_bench_step_result) { 0 };
  if (!resolve_params (ctx, &p, &g.r, error) || !check_memory (ctx, g.r.frames, FALSE, error) ||
      !gen_prepare (&g, error))
    goto out;
  if (params->breakdown)
    timing = vdit_backend_timing_wrap (be);
  for (int k = 0; k < params->warmup + params->repeat; k++) {
    vdit_op_times times = { 0 };
    if (k == params->warmup && be->iface->mem_peak)
      be->iface->mem_peak (be->context, TRUE, &result->peak_bytes);
    gint64 t0 = g_get_monotonic_time ();
    const int launched = g.graph_launches;
    /* with the latent on the backend the step's end is the finiteness check's wait */
    if (g.on_backend ? !gen_step_backend (&g, k, error) || !check_latent_backend (&g, k + 1, error)
                     : !gen_model_eval (&g, k, error))
      goto out;
    if (k >= params->warmup && g.graph_launches > launched && k > g.graph_step)
      result->graph_replays++;
    double ms = (g_get_monotonic_time () - t0) / 1000.0;
    if (timing && !vdit_backend_timing_collect (timing, &times, error))
      goto out;
    if (k >= params->warmup) {
      total += ms;
      best = MIN (best, ms);
      for (int i = 0; i < VDIT_OP_KINDS; i++) {
        result->per_step.ms[i] += times.ms[i] / params->repeat;
        result->per_step.calls[i] += times.calls[i];
      }
    }
  }
  result->sampler_on_backend = g.on_backend;
  result->graphs = g.graph != NULL;
  result->shared_prefix = vdit_dit_ws_shares_prefix (g.ws);
  result->negative_tokens = g.text[1] ? vdit_dit_text_tokens (g.text[1]) : 0;
  if (be->iface->mem_peak && params->repeat > 0)
    result->have_peak = be->iface->mem_peak (be->context, FALSE, &result->peak_bytes);
  result->ms = params->repeat > 0 ? total / params->repeat : 0.0;
  result->ms_min = params->repeat > 0 ? best : 0.0;
  for (int i = 0; i < VDIT_OP_KINDS && params->repeat > 0; i++)
    result->per_step.calls[i] /= params->repeat;
  ok = TRUE;
out:
  if (timing)
    vdit_backend_timing_unwrap (be, timing);
  gen_state_clear (&g);
  return ok;
}
