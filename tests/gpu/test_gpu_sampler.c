/* The sampler on the device: the CUDA slots against the CPU backend's (the guided update
 * of every sampler type bit for bit, patches in and out, the NaN check, the timestep read
 * from device memory), and models/tiny generated with its latent on the GPU, with and
 * without CUDA graphs: the same bits as the host sampler on CUDA, the CPU's clip within
 * test_gpu_generate's PSNR bound, graphs recorded and replayed, and the guided passes'
 * shared prefix (engine/dit.h) the bits of full passes. */
#include "ctx.h"
#include "gpu_util.h"
#include "model.h"
#include "test_util.h"
#include "vdit_bench.h"

#include <math.h>
#include <string.h>

#define MIN_PSNR 25.0 /* dB over all frames, as test_gpu_generate.c */

static const vdit_sampler_update updates[] = {
  { VDIT_UPDATE_FLOW, { -0.125f } },
  { VDIT_UPDATE_DDIM_V, { 0.93f, 0.36f, 0.97f, 0.24f } },
  { VDIT_UPDATE_DDIM_EPS, { 0.61f, 0.79f, 0.83f, 0.55f } },
  { VDIT_UPDATE_ANCESTRAL_V, { -0.7f, 0.51f, 1.4f, -0.6f, 0.33f } },
  { VDIT_UPDATE_ANCESTRAL_EPS, { 0.0f, 0.0f, 2.5f, -0.9f, 0.7f } },
};

/* offset 1 leaves the 16-byte path for the scalar one */
static void
check_update (gpu_pair *p, const vdit_sampler_update *u, size_t n, size_t offset,
              gboolean guided, gboolean noisy)
{
  const size_t total = n + offset;
  g_autofree float *x = host_uniform (p->rng, total, -3.0, 3.0);
  g_autofree float *cond = host_uniform (p->rng, total, -1.0, 1.0);
  g_autofree float *uncond = host_uniform (p->rng, total, -1.0, 1.0);
  g_autofree float *noise = host_uniform (p->rng, total, -2.0, 2.0);
  twin tx = twin_new (p, x, total, VDIT_ELEM_F32), tc = twin_new (p, cond, total, VDIT_ELEM_F32);
  twin tu = twin_new (p, uncond, total, VDIT_ELEM_F32);
  twin tn = twin_new (p, noise, total, VDIT_ELEM_F32);
  vdit_backend *bes[2] = { &p->cpu, &p->gpu };
  for (int b = 0; b < 2; b++) {
    void *const *bufs[4] = { b ? &tx.gpu : &tx.cpu, b ? &tc.gpu : &tc.cpu, b ? &tu.gpu : &tu.cpu,
                             b ? &tn.gpu : &tn.cpu };
    float *at[4];
    for (int i = 0; i < 4; i++)
      at[i] = (float *) *bufs[i] + offset;
    bes[b]->iface->sampler_update (bes[b]->context, at[0], at[1], guided ? at[2] : NULL, 4.5f,
                                   noisy ? at[3] : NULL, u, n);
  }
  float *cpu, *gpu;
  twin_fetch (p, &tx, &cpu, &gpu);
  g_assert_cmpmem (cpu, total * sizeof (float), gpu, total * sizeof (float));
  g_free (cpu);
  g_free (gpu);
  twin_free (p, &tx);
  twin_free (p, &tc);
  twin_free (p, &tu);
  twin_free (p, &tn);
}

static void
test_update (void)
{
  gpu_pair p;
  gpu_pair_init (&p, 3);
  for (guint i = 0; i < G_N_ELEMENTS (updates); i++)
    for (int guided = 0; guided < 2; guided++) {
      const gboolean noisy = updates[i].kind >= VDIT_UPDATE_ANCESTRAL_V;
      check_update (&p, &updates[i], 100003, 0, guided, noisy);
      check_update (&p, &updates[i], 1029, 1, guided, noisy);
    }
  gpu_pair_clear (&p);
}

static void
test_layouts_and_checks (void)
{
  GError *error = NULL;
  gpu_pair p;
  gpu_pair_init (&p, 4);
  const int T = 6, H = 12, W = 16, C = 4; /* T a multiple of every patch's pt */
  const size_t n = (size_t) T * H * W * C;
  static const int patches[][3] = { { 1, 1, 1 }, { 1, 2, 2 }, { 2, 2, 2 } };
  g_autofree float *latent = host_uniform (p.rng, n, -2.0, 2.0);
  twin tl = twin_new (&p, latent, n, VDIT_ELEM_F32);
  for (guint k = 0; k < G_N_ELEMENTS (patches); k++) {
    /* patchify: the GPU's tokens are the CPU's f32 products rounded to bf16 */
    twin tok = twin_new (&p, NULL, n, VDIT_ELEM_ACT);
    p.cpu.iface->patchify (p.cpu.context, tok.cpu, tl.cpu, 0.41f, T, H, W, C, patches[k]);
    p.gpu.iface->patchify (p.gpu.context, tok.gpu, tl.gpu, 0.41f, T, H, W, C, patches[k]);
    float *cpu, *gpu;
    twin_fetch (&p, &tok, &cpu, &gpu);
    bf16_round (cpu, n);
    g_assert_cmpmem (cpu, n * sizeof (float), gpu, n * sizeof (float));
    /* unpatchify of bf16-exact tokens (the rounded ones, given to both): exact */
    twin exact = twin_new (&p, cpu, n, VDIT_ELEM_ACT);
    g_free (cpu);
    g_free (gpu);
    twin out = twin_new (&p, NULL, n, VDIT_ELEM_F32);
    p.cpu.iface->unpatchify (p.cpu.context, out.cpu, exact.cpu, T, H, W, C, patches[k]);
    p.gpu.iface->unpatchify (p.gpu.context, out.gpu, exact.gpu, T, H, W, C, patches[k]);
    twin_fetch (&p, &out, &cpu, &gpu);
    g_assert_cmpmem (cpu, n * sizeof (float), gpu, n * sizeof (float));
    g_free (cpu);
    g_free (gpu);
    twin_free (&p, &out);
    twin_free (&p, &exact);
    twin_free (&p, &tok);
  }
  /* the NaN check */
  gboolean finite = FALSE;
  g_assert_true (p.gpu.iface->all_finite (p.gpu.context, tl.gpu, n, &finite, &error));
  g_assert_no_error (error);
  g_assert_true (finite);
  latent[n / 2] = NAN;
  g_assert_true (p.gpu.iface->upload (p.gpu.context, tl.gpu, latent, n, VDIT_ELEM_F32, &error));
  g_assert_true (p.gpu.iface->all_finite (p.gpu.context, tl.gpu, n, &finite, &error));
  g_assert_false (finite);
  latent[n / 2] = INFINITY;
  g_assert_true (p.gpu.iface->upload (p.gpu.context, tl.gpu, latent, n, VDIT_ELEM_F32, &error));
  g_assert_true (p.gpu.iface->all_finite (p.gpu.context, tl.gpu, n, &finite, &error));
  g_assert_false (finite);
  twin_free (&p, &tl);
  /* the timestep from device memory: the argument kernel's bits */
  const float tau[2] = { 981.0f, 3.25f };
  const int fd = 256;
  float *dtau = p.gpu.iface->alloc (p.gpu.context, 2, VDIT_ELEM_F32, &error);
  void *a = p.gpu.iface->alloc (p.gpu.context, 2 * fd, VDIT_ELEM_ACT, &error);
  void *b = p.gpu.iface->alloc (p.gpu.context, 2 * fd, VDIT_ELEM_ACT, &error);
  g_assert_true (p.gpu.iface->upload (p.gpu.context, dtau, tau, 2, VDIT_ELEM_F32, &error));
  p.gpu.iface->timestep_embedding (p.gpu.context, a, tau, 2, fd);
  p.gpu.iface->timestep_embedding_buf (p.gpu.context, b, dtau, 2, fd);
  g_autofree float *ha = g_new (float, 2 * fd), *hb = g_new (float, 2 * fd);
  g_assert_true (p.gpu.iface->download (p.gpu.context, ha, a, 2 * fd, VDIT_ELEM_ACT, &error));
  g_assert_true (p.gpu.iface->download (p.gpu.context, hb, b, 2 * fd, VDIT_ELEM_ACT, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (ha, 2 * fd * sizeof (float), hb, 2 * fd * sizeof (float));
  p.gpu.iface->release (p.gpu.context, dtau);
  p.gpu.iface->release (p.gpu.context, a);
  p.gpu.iface->release (p.gpu.context, b);
  gpu_pair_clear (&p);
}

/* ---- whole generations ----------------------------------------------------------- */

typedef enum { PATH_HOST, PATH_DEVICE, PATH_GRAPHS } sampler_path;

static const char *const path_names[] = { "host sampler", "device sampler",
                                          "device sampler + graphs" };

/* models/tiny's clip (frames and final latent) on device, through one path. */
static void
generate (vdit_model *model, VditDevice device, VditAttention attention, sampler_path path,
          gpu_clip *c, float **latent)
{
  GError *error = NULL;
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = device;
  vdit_ctx *ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  vdit_backend *be = vdit_ctx_get_backend (ctx);
  const vdit_backend_i *own = be->iface;
  vdit_backend_i host = *own;
  if (path == PATH_HOST) { /* the table without the sampler's slots */
    host.patchify = NULL;
    host.unpatchify = NULL;
    host.sampler_update = NULL;
    host.all_finite = NULL;
    be->iface = &host;
  }
  g_setenv ("VDIT_CUDA_GRAPHS", path == PATH_GRAPHS ? "1" : "0", TRUE);
  vdit_gen_params gp;
  vdit_gen_params_init (&gp);
  gp.prompt = "a red ball rolls to the left";
  gp.negative_prompt = "blurry";
  gp.seed = 1234;
  gp.attention = attention;
  gp.on_frame = gpu_clip_on_frame;
  gp.user_data = c;
  c->rgb = g_byte_array_new ();
  c->frames = 0;
  const vdit_config *cfg = model->config;
  const int frames = model->info.frames;
  const size_t n = (size_t) vdit_model_latent_frames (model, frames) * cfg->latent_height *
                   cfg->latent_width * cfg->dit.in_channels;
  *latent = g_new (float, n);
  const gint64 t0 = g_get_monotonic_time ();
  const gboolean ok = vdit_generate_latent (ctx, &gp, *latent, &error);
  be->iface = own;
  g_assert_no_error (error);
  g_assert_true (ok);
  g_test_message ("%s, %s, %s: %d frames in %.1f ms", vdit_ctx_get_device_name (ctx),
                  vdit_attention_name (attention), path_names[path], c->frames,
                  (g_get_monotonic_time () - t0) / 1000.0);
  g_unsetenv ("VDIT_CUDA_GRAPHS");
  vdit_ctx_free (ctx);
}

static void
test_generate (gconstpointer data)
{
  const VditAttention attention = GPOINTER_TO_INT (data);
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  const size_t n = (size_t) vdit_model_latent_frames (model, model->info.frames) *
                   model->config->latent_height * model->config->latent_width *
                   model->config->dit.in_channels;
  gpu_clip ref, c[3];
  float *ref_latent, *latent[3];
  generate (model, VDIT_DEVICE_CPU, attention, PATH_DEVICE, &ref, &ref_latent);
  for (int path = PATH_HOST; path <= PATH_GRAPHS; path++) {
    generate (model, VDIT_DEVICE_CUDA, attention, path, &c[path], &latent[path]);
    const double db = gpu_clip_psnr (&ref, &c[path]);
    g_test_message ("%s, %s: CPU vs CUDA PSNR %.2f dB", vdit_attention_name (attention),
                    path_names[path], db);
    g_assert_cmpfloat (db, >=, MIN_PSNR);
  }
  /* the device's update is the host's arithmetic, and a replay runs the recorded kernels
   * on the step's timestep: the same bits all three ways */
  g_assert_cmpmem (latent[PATH_HOST], n * sizeof (float), latent[PATH_DEVICE], n * sizeof (float));
  g_assert_cmpmem (latent[PATH_DEVICE], n * sizeof (float), latent[PATH_GRAPHS],
                   n * sizeof (float));
  g_assert_cmpmem (c[PATH_DEVICE].rgb->data, c[PATH_DEVICE].rgb->len, c[PATH_GRAPHS].rgb->data,
                   c[PATH_GRAPHS].rgb->len);
  /* guided passes that share nothing (VDIT_GUIDED_PREFIX=0): the same bits again */
  gpu_clip full;
  float *full_latent;
  g_setenv ("VDIT_GUIDED_PREFIX", "0", TRUE);
  generate (model, VDIT_DEVICE_CUDA, attention, PATH_GRAPHS, &full, &full_latent);
  g_unsetenv ("VDIT_GUIDED_PREFIX");
  g_assert_cmpmem (full_latent, n * sizeof (float), latent[PATH_GRAPHS], n * sizeof (float));
  g_byte_array_unref (full.rgb);
  g_free (full_latent);
  g_byte_array_unref (ref.rgb);
  g_free (ref_latent);
  for (int i = 0; i < 3; i++) {
    g_byte_array_unref (c[i].rgb);
    g_free (latent[i]);
  }
  vdit_model_free (model);
}

/* vdit bench step's view: the sampler on the device, a graph recorded at the second run
 * and replayed by every timed run after two warm-ups; none with VDIT_CUDA_GRAPHS=0. */
static void
test_bench_graphs (void)
{
  GError *error = NULL;
  g_autofree char *dir = test_source_path ("models/tiny");
  vdit_model *model = vdit_model_load (dir, &error);
  g_assert_no_error (error);
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CUDA;
  vdit_ctx *ctx = vdit_ctx_new (model, &cp, &error);
  g_assert_no_error (error);
  for (int graphs = 1; graphs >= 0; graphs--) {
    g_setenv ("VDIT_CUDA_GRAPHS", graphs ? "1" : "0", TRUE);
    vdit_bench_step_params bp = { .frames = model->info.frames,
                                  .attention = VDIT_ATTENTION_FULL, .repeat = 3, .warmup = 2,
                                  .guidance = 4.0f };
    vdit_bench_step_result r;
    g_assert_true (vdit_bench_dit_step (ctx, &bp, &r, &error));
    g_assert_no_error (error);
    g_test_message ("graphs %s: %.3f ms a guided step (min %.3f), %d replays",
                    graphs ? "on" : "off", r.ms, r.ms_min, r.graph_replays);
    g_assert_true (r.sampler_on_backend);
    g_assert_cmpint (r.graphs, ==, graphs);
    g_assert_cmpint (r.graph_replays, ==, graphs ? bp.repeat : 0);
  }
  g_unsetenv ("VDIT_CUDA_GRAPHS");
  vdit_ctx_free (ctx);
  vdit_model_free (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (!gpu_available ())
    return GPU_TEST_SKIP;
  g_test_add_func ("/gpu/sampler/update", test_update);
  g_test_add_func ("/gpu/sampler/layouts-and-checks", test_layouts_and_checks);
  g_test_add_data_func ("/gpu/sampler/generate/full", GINT_TO_POINTER (VDIT_ATTENTION_FULL),
                        test_generate);
  g_test_add_data_func ("/gpu/sampler/generate/tile", GINT_TO_POINTER (VDIT_ATTENTION_TILE),
                        test_generate);
  g_test_add_func ("/gpu/sampler/bench-graphs", test_bench_graphs);
  return g_test_run ();
}
