/* `vdit bench attention`: one self-attention call of a policy (full, tile k:(T−k) or
 * adaptive) on random q, k, v, timed on a backend; one JSON line. */
#include <math.h>
#include <stdlib.h>

#include "attention_plan.h"
#include "backend.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "json_writer.h"

typedef struct {
  VditAttention mode;
  int frames, tpf, heads, head_dim, k, block, repeat, warmup;
  double sparsity;
} bench_args;

typedef struct {
  double ms, ms_min, ms_median, search_ms, search_cold_ms, research_ms, density;
} bench_result;

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static gboolean
run_timed (vdit_backend *be, vdit_attn_policy *p, int step, void *out, int d, const void *qkv,
           float scale, double *ms, GError **error)
{
  const gint64 t0 = g_get_monotonic_time ();
  if (!vdit_attn_policy_run (p, step, 0, 0, out, d, qkv, 3 * d, vdit_buf_at (be, (void *) qkv, d),
                             3 * d, vdit_buf_at (be, (void *) qkv, 2 * d), 3 * d, scale, error)
      || !be->iface->sync (be->context, error))
    return FALSE;
  *ms = (g_get_monotonic_time () - t0) / 1000.0;
  return TRUE;
}

static gboolean
bench (vdit_backend *be, const bench_args *a, bench_result *r, GError **error)
{
  const int n = a->frames * a->tpf, d = a->heads * a->head_dim;
  const size_t n_qkv = (size_t) n * 3 * d;
  /* adaptive: step 0 searches (dense + LSE, then block scores); the timed steps reuse
   * its pattern; one more step searches again under the cached LSE */
  const int first = a->mode == VDIT_ATTENTION_ADAPTIVE ? 1 : 0;
  const int steps = first + a->warmup + a->repeat + first;
  float search_at[2] = { 0.0f, (float) (steps - 1) / (float) steps };
  vdit_config cfg = { 0 };
  cfg.dit.depth = 1;
  cfg.attention = (vdit_attention_config) {
    .mode = a->mode, .tile_k = a->k, .block = a->block, .sparsity = (float) a->sparsity,
    .warmup = 0.0f, .search_steps = search_at, .n_search_steps = 2,
  };
  const vdit_attn_policy_params pp = {
    .mode = a->mode, .frames = a->frames, .tokens_per_frame = a->tpf, .depth = 1,
    .heads = a->heads, .head_dim = a->head_dim, .steps = steps,
    .sparsity = (float) a->sparsity,
  };
  gboolean ok = FALSE;
  void *qkv = NULL, *out = NULL;
  float *host = NULL;
  double *times = NULL;
  vdit_attn_policy *p = vdit_attn_policy_new (be, &cfg, &pp, error);
  if (p == NULL)
    return FALSE;
  if (!(qkv = be->iface->alloc (be->context, n_qkv, VDIT_ELEM_ACT, error)) ||
      !(out = be->iface->alloc (be->context, (size_t) n * d, VDIT_ELEM_ACT, error)))
    goto out;
  host = g_try_new (float, n_qkv);
  if (host == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "out of host memory for %zu random inputs", n_qkv);
    goto out;
  }
  GRand *rng = g_rand_new_with_seed (1);
  for (size_t i = 0; i < n_qkv; i++)
    host[i] = (float) g_rand_double_range (rng, -1.0, 1.0);
  g_rand_free (rng);
  if (!be->iface->upload (be->context, qkv, host, n_qkv, VDIT_ELEM_ACT, error))
    goto out;

  const float scale = 1.0f / sqrtf ((float) a->head_dim);
  double ms, total = 0.0;
  times = g_new (double, a->repeat);
  r->search_ms = 0.0;
  r->ms_min = G_MAXDOUBLE;
  if (first) {
    /* The process's first search also loads kernels and grows the memory pool: timed on
     * a policy of its own (search_cold_ms), then the search proper on a fresh one. */
    vdit_attn_policy *cold = vdit_attn_policy_new (be, &cfg, &pp, error);
    const gboolean cold_ok =
        cold && run_timed (be, cold, 0, out, d, qkv, scale, &r->search_cold_ms, error);
    vdit_attn_policy_free (cold);
    if (!cold_ok || !run_timed (be, p, 0, out, d, qkv, scale, &r->search_ms, error))
      goto out;
  }
  for (int i = 0; i < a->warmup + a->repeat; i++) {
    if (!run_timed (be, p, first + i, out, d, qkv, scale, &ms, error))
      goto out;
    if (i >= a->warmup) {
      total += ms;
      r->ms_min = MIN (r->ms_min, ms);
      times[i - a->warmup] = ms;
    }
  }
  if (first && !run_timed (be, p, steps - 1, out, d, qkv, scale, &r->research_ms, error))
    goto out;
  r->ms = total / a->repeat;
  qsort (times, a->repeat, sizeof (double), cmp_double);
  r->ms_median = a->repeat % 2 ? times[a->repeat / 2]
                               : 0.5 * (times[a->repeat / 2 - 1] + times[a->repeat / 2]);
  r->density = vdit_attn_policy_density (p);
  ok = TRUE;
out:
  g_free (times);
  g_free (host);
  if (out)
    be->iface->release (be->context, out);
  if (qkv)
    be->iface->release (be->context, qkv);
  vdit_attn_policy_free (p);
  return ok;
}

static void
print_result (const bench_args *a, const bench_result *r, const char *backend)
{
  const int64_t n = (int64_t) a->frames * a->tpf;
  /* QKᵀ and PV: 2 multiply-adds per (query, key, channel) */
  const double flops = 4.0 * (double) n * n * a->heads * a->head_dim;
  const double tflops = flops / (r->ms * 1e-3) / 1e12;
  vdit_json j;
  vdit_json_init (&j);
  vdit_json_begin_object (&j, NULL);
  vdit_json_string (&j, "bench", "attention");
  vdit_json_string (&j, "mode", vdit_attention_name (a->mode));
  vdit_json_int (&j, "frames", a->frames);
  vdit_json_int (&j, "tokens_per_frame", a->tpf);
  vdit_json_int (&j, "tokens", n);
  vdit_json_int (&j, "heads", a->heads);
  vdit_json_int (&j, "head_dim", a->head_dim);
  if (a->mode == VDIT_ATTENTION_TILE)
    vdit_json_int (&j, "k", MIN (a->k, a->frames));
  if (a->mode == VDIT_ATTENTION_ADAPTIVE) {
    vdit_json_double (&j, "sparsity", round (a->sparsity * 1e6) / 1e6);
    vdit_json_int (&j, "block", a->block);
    vdit_json_double (&j, "search_ms", round (r->search_ms * 1000) / 1000);
    vdit_json_double (&j, "search_cold_ms", round (r->search_cold_ms * 1000) / 1000);
    vdit_json_double (&j, "research_ms", round (r->research_ms * 1000) / 1000);
  }
  vdit_json_double (&j, "density", round (r->density * 1e6) / 1e6);
  vdit_json_double (&j, "ms", round (r->ms * 1000) / 1000);
  vdit_json_double (&j, "ms_min", round (r->ms_min * 1000) / 1000);
  vdit_json_double (&j, "ms_median", round (r->ms_median * 1000) / 1000);
  vdit_json_double (&j, "ms_per_frame", round (r->ms / a->frames * 1000) / 1000);
  vdit_json_double (&j, "tflops_dense_equiv", round (tflops * 1e4) / 1e4);
  vdit_json_double (&j, "tflops_kept", round (tflops * r->density * 1e4) / 1e4);
  vdit_json_int (&j, "repeat", a->repeat);
  vdit_json_string (&j, "backend", backend);
  /* a kernel the CUDA dispatcher was forced to (VDIT_CUDA_ATTN), so lines compare */
  const char *variant = g_getenv ("VDIT_CUDA_ATTN");
  if (variant && *variant)
    vdit_json_string (&j, "variant", variant);
  vdit_json_end_object (&j);
  vdit_json_print_line (&j);
}

int
vdit_cmd_bench_attention (int argc, char **argv)
{
  const char *cmd = "vdit bench attention";
  char *mode_name = NULL, *backend_name = NULL;
  bench_args a = {
    .frames = 8, .tpf = 256, .heads = 4, .head_dim = 64, .k = 1, .block = 64, .repeat = 5,
    .warmup = 1, .sparsity = 0.8,
  };
  int threads = 0, device_id = 0;
  GOptionEntry entries[] = {
    { "mode", 'a', 0, G_OPTION_ARG_STRING, &mode_name, "full, tile or adaptive (default tile)",
      "MODE" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &a.frames, "Latent frames T (default 8)", "T" },
    { "tokens-per-frame", 'n', 0, G_OPTION_ARG_INT, &a.tpf, "Tokens per latent frame "
      "(default 256; 720p Open-Sora-Plan: 3600)", "N" },
    { "heads", 0, 0, G_OPTION_ARG_INT, &a.heads, "Attention heads (default 4)", "H" },
    { "head-dim", 0, 0, G_OPTION_ARG_INT, &a.head_dim, "Channels per head (default 64)", "D" },
    { "k", 'k', 0, G_OPTION_ARG_INT, &a.k, "Tile mode: global reference frames (default 1)",
      "K" },
    { "sparsity", 's', 0, G_OPTION_ARG_DOUBLE, &a.sparsity,
      "Adaptive mode: fraction of blocks skipped (default 0.8)", "S" },
    { "block", 'b', 0, G_OPTION_ARG_INT, &a.block, "Adaptive mode: tokens per block "
      "(default 64)", "B" },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, "cpu or cuda (default cpu)", "BE" },
    { "device-id", 0, 0, G_OPTION_ARG_INT, &device_id, "GPU to use (default 0)", "ID" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (default: the CPUs this process may use)", "N" },
    { "repeat", 'r', 0, G_OPTION_ARG_INT, &a.repeat, "Timed runs (default 5)", "R" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &a.warmup, "Untimed runs first (default 1)", "W" },
    { NULL }
  };
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  vdit_backend be = { 0 };
  GOptionContext *octx = g_option_context_new ("- time one self-attention call");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "Prints one JSON line with mode, frames, tokens_per_frame, tokens, heads, head_dim,\n"
      "k (tile), sparsity/block/search_ms/research_ms (adaptive), density (kept fraction of block\n"
      "pairs), ms (mean of the timed runs), ms_min, ms_median, ms_per_frame, tflops_dense_equiv\n"
      "(4·n²·heads·head_dim / time), tflops_kept (the same times density), backend.\n"
      "Adaptive mode first runs one search step (dense attention with LSE, block scores,\n"
      "the pattern choice and its layout; its time is search_ms) and then times the steps\n"
      "that reuse the pattern; research_ms is one more search after them (block scores\n"
      "under the cached LSE, the choice, then the new pattern's attention).\n"
      "search_cold_ms is the first search run once before on a policy of its own: the\n"
      "process's first, which also loads kernels and grows the device memory pool.\n");
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;
  if (argc > 1) {
    status = vdit_cli_usage (cmd, "unexpected argument '%s'", argv[1]);
    goto out;
  }
  a.mode = VDIT_ATTENTION_TILE;
  if (mode_name && (!vdit_attention_from_name (mode_name, &a.mode)
                    || a.mode == VDIT_ATTENTION_DEFAULT)) {
    status = vdit_cli_usage (cmd, "unknown mode '%s' (expected full, tile or adaptive)",
                             mode_name);
    goto out;
  }
  if (a.frames < 1 || a.tpf < 1 || a.heads < 1 || a.head_dim < 1 || a.k < 0 || a.block < 1
      || a.repeat < 1 || a.warmup < 0 || threads < 0 || !(a.sparsity >= 0 && a.sparsity < 1)) {
    status = vdit_cli_usage (cmd, "--frames, --tokens-per-frame, --heads, --head-dim, --block "
                                  "and --repeat must be at least 1, --k, --warmup and "
                                  "--threads not negative, --sparsity in [0, 1)");
    goto out;
  }
  if ((int64_t) a.frames * a.tpf > G_MAXINT / 4) {
    status = vdit_cli_usage (cmd, "%d frames of %d tokens is too long", a.frames, a.tpf);
    goto out;
  }

  gboolean ok;
  if (backend_name == NULL || g_str_equal (backend_name, "cpu")) {
    ok = vdit_backend_cpu_init (&be, threads, &error);
  } else if (g_str_equal (backend_name, "cuda")) {
    ok = vdit_backend_cuda_init (&be, device_id, &error);
  } else {
    status = vdit_cli_usage (cmd, "unknown backend '%s' (expected cpu or cuda)", backend_name);
    goto out;
  }
  bench_result r;
  if (!ok || !bench (&be, &a, &r, &error)) {
    status = vdit_cli_fail (error);
    goto out;
  }
  print_result (&a, &r, be.iface->name);

out:
  if (be.iface)
    vdit_backend_free (&be);
  g_option_context_free (octx);
  g_free (mode_name);
  g_free (backend_name);
  return status;
}
