/* The CPU backend: f32 activations in host memory, OpenBLAS and OpenMP. It is the
 * reference every other backend is tested against. */
#include "backend.h"
#include "cpu_attention.h"
#include "cpu_frames.h"
#include "cpu_ops.h"
#include "cpu_sampler.h"
#include "cpu_threads.h"
#include "safetensors.h"
#include "vdit.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Declared by OpenBLAS's cblas.h on Debian; repeated here for other builds. */
void openblas_set_num_threads (int num_threads);

static void
cpu_free (void *ctx)
{
  cpu_context *c = ctx;
  cpu_pool_free (c->pool);
  cpu_scratch_free (&c->attn_keys);
  cpu_scratch_free (&c->attn_work);
  g_free (c);
}

static void *
cpu_alloc (void *ctx, size_t n, VditElem elem, GError **error)
{
  void *p = NULL;
  size_t bytes = MAX (n, 1) * 4; /* f32 and i32 alike */
  const gboolean fault = vdit_fault_alloc_now ();
  if (fault || n > SIZE_MAX / 4 || posix_memalign (&p, 64, bytes) != 0) {
    const long pages = sysconf (_SC_AVPHYS_PAGES), page = sysconf (_SC_PAGE_SIZE);
    g_autofree char *asked = vdit_size_text (4.0 * n);
    g_autofree char *avail = vdit_size_text (pages > 0 && page > 0 ? (double) pages * page
                                                                   : 0.0);
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "out of host memory: cannot allocate %s, with %s of the host's memory "
                 "free%s: ask for fewer frames or a smaller size", asked, avail,
                 fault ? " (a fault injected by a test)" : "");
    return NULL;
  }
  return p;
}

static void
cpu_release (void *ctx, void *buf)
{
  free (buf);
}

static gboolean
cpu_copy (void *ctx, void *dst, const void *src, size_t n, VditElem elem, GError **error)
{
  if (elem == VDIT_ELEM_BF16) /* upload: the activation type is f32 */
    vdit_convert_to_f32 (dst, src, VDIT_DTYPE_BF16, n);
  else if (n)
    memcpy (dst, src, n * 4);
  return TRUE;
}

static void
cpu_copy_rows (void *ctx, void *dst, int ldd, const void *src, int lds, int rows, int cols)
{
  for (int i = 0; i < rows; i++)
    memcpy ((float *) dst + (size_t) i * ldd, (const float *) src + (size_t) i * lds,
            (size_t) cols * sizeof (float));
}

static gboolean
cpu_sync (void *ctx, GError **error)
{
  return TRUE;
}

static const vdit_backend_i cpu_backend_i = {
  /* .name = */ "cpu",
  /* .free = */ cpu_free,
  /* .alloc = */ cpu_alloc,
  /* .release = */ cpu_release,
  /* .upload = */ cpu_copy,
  /* .download = */ cpu_copy,
  /* .sync = */ cpu_sync,
  /* .matmul = */ cpu_matmul,
  /* .rmsnorm = */ cpu_rmsnorm,
  /* .layernorm_modulate = */ cpu_layernorm_modulate,
  /* .add_gated = */ cpu_add_gated,
  /* .mul = */ cpu_mul,
  /* .add = */ cpu_add,
  /* .activate = */ cpu_activate,
  /* .rope = */ cpu_rope,
  /* .attention = */ cpu_attention,
  /* .layout_new = */ cpu_layout_new,
  /* .layout_free = */ cpu_layout_free,
  /* .block_scores = */ cpu_block_scores,
  /* .attention_scored = */ NULL, /* attention, then block_scores */
  /* .adaptive_layout = */ NULL, /* the host chooses */
  /* .timestep_embedding = */ cpu_timestep_embedding,
  /* .decode_rgb = */ cpu_decode_rgb,
  /* .host_alloc = */ NULL, /* buffers are host memory: frames decode on the host */
  /* .host_free = */ NULL,
  /* .mem_info = */ NULL, /* host memory: generate.c checks it */
  /* .mark_new = */ NULL, /* ops are done when they return: the host clock times them */
  /* .mark_elapsed_ms = */ NULL,
  /* .mark_free = */ NULL,
  /* .mem_peak = */ NULL,
  /* .vae_conv3d = */ NULL, /* the VAE runs the host ops of vae_ops.h directly */
  /* .vae_group_norm = */ NULL,
  /* .vae_upsample = */ NULL,
  /* .vae_frame_attention = */ NULL,
  /* .patchify = */ cpu_patchify,
  /* .unpatchify = */ cpu_unpatchify,
  /* .sampler_update = */ cpu_sampler_update,
  /* .all_finite = */ cpu_all_finite,
  /* .timestep_embedding_buf = */ cpu_timestep_embedding_buf,
  /* .graph_begin = */ NULL, /* ops run as they are called: nothing to record */
  /* .graph_end = */ NULL,
  /* .graph_launch = */ NULL,
  /* .graph_free = */ NULL,
  /* .copy_rows = */ cpu_copy_rows,
};

gboolean
vdit_backend_cpu_init (vdit_backend *be, int threads, GError **error)
{
  if (!vdit_cpu_threads_check (threads, error))
    return FALSE;
  cpu_context *c = g_new0 (cpu_context, 1);
  char *why = NULL;
  const int usable = vdit_cpu_default_threads (&why);
  c->threads = threads > 0 ? threads : usable;
  if (threads > 0)
    g_info ("CPU backend: %d threads as asked (%d by default: %s)", c->threads, usable, why);
  else
    g_info ("CPU backend: %d threads (%s)", c->threads, why);
  g_free (why);
  c->pool = cpu_pool_new (c->threads);
  if (c->pool == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "CPU backend: cannot start %d threads (try --threads 1)", c->threads);
    g_free (c);
    return FALSE;
  }
  omp_set_num_threads (c->threads); /* engine code outside the backend (weights.c) */
  openblas_set_num_threads (1); /* GEMMs are split across the pool instead */
  be->iface = &cpu_backend_i;
  be->context = c;
  be->act_size = sizeof (float);
  return TRUE;
}

void
vdit_backend_cpu_set_cancel (vdit_backend *be, const gint *flag)
{
  g_return_if_fail (be->iface == &cpu_backend_i);
  cpu_pool_set_cancel (((cpu_context *) be->context)->pool, flag);
}
