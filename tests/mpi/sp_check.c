/* Run under mpirun by test_mpi.py: a generation split over the job's ranks (Ulysses
 * sequence parallelism) against the same generation on rank 0 alone.
 *
 * usage: sp_check MODEL_DIR full|tile|adaptive FRAMES STEPS GUIDANCE
 * Rank 0 generates alone first (the reference), then with every rank; the other ranks
 * serve (vdit_worker_serve). Prints the largest differences; exit 0 when the latents
 * agree within fp32 tolerance and the frames within one level of 255. */
#include "ctx.h"
#include "../frames_out.h"
#include "model.h"
#include "worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
die (vdit_comm *comm, GError *error)
{
  vdit_comm_abort (comm, 1, error->message);
  fprintf (stderr, "sp_check: %s\n", error->message);
  return 1;
}

int
main (int argc, char **argv)
{
  if (argc != 6) {
    fprintf (stderr, "usage: sp_check MODEL_DIR full|tile|adaptive FRAMES STEPS GUIDANCE\n");
    return 2;
  }
  GError *error = NULL;
  vdit_comm comm;
  if (!vdit_comm_init_auto (&comm, &error)) {
    fprintf (stderr, "sp_check: %s\n", error->message);
    return 1;
  }
  comm.timeout_s = 60.0;
  vdit_ctx_params cp;
  vdit_ctx_params_init (&cp);
  cp.device = VDIT_DEVICE_CPU;
  cp.threads = 1;
  const int rank = vdit_comm_rank (&comm), size = vdit_comm_size (&comm);
  if (rank != 0) {
    if (!vdit_worker_serve (&comm, NULL, &cp, 0.0, &error))
      return die (&comm, error);
    vdit_comm_free (&comm);
    return 0;
  }

  vdit_gen_params p;
  vdit_gen_params_init (&p);
  p.prompt = "a red ball rolls to the left";
  p.negative_prompt = "blurry";
  p.frames = atoi (argv[3]);
  p.steps = atoi (argv[4]);
  p.guidance = (float) g_ascii_strtod (argv[5], NULL);
  p.seed = 7;
  if (!vdit_attention_from_name (argv[2], &p.attention)) {
    fprintf (stderr, "sp_check: unknown attention %s\n", argv[2]);
    return 2;
  }
  vdit_model *model = vdit_model_load (argv[1], &error);
  vdit_ctx *ctx = model ? vdit_ctx_new (model, &cp, &error) : NULL;
  if (ctx == NULL)
    return die (&comm, error);
  const vdit_config *cfg = vdit_model_get_config (model);
  const size_t n = (size_t) vdit_model_latent_frames (model, p.frames) * cfg->height *
                   cfg->width * cfg->dit.in_channels;
  float *ref = g_new (float, n), *got = g_new (float, n);
  frames_out ref_rgb = { 0 }, got_rgb = { 0 };
  p.on_frame = keep_frame;
  p.user_data = &ref_rgb;
  if (!vdit_generate_latent (ctx, &p, ref, &error))
    return die (&comm, error);
  p.user_data = &got_rgb;
  if (!vdit_ctx_set_comm (ctx, &comm, &error) || !vdit_generate_latent (ctx, &p, got, &error) ||
      !vdit_sp_job_send_stop (&comm, &error))
    return die (&comm, error);

  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < n; i++) {
    max_diff = fmax (max_diff, fabs ((double) ref[i] - got[i]));
    max_ref = fmax (max_ref, fabs ((double) ref[i]));
  }
  int max_byte = 0;
  const size_t bytes = (size_t) p.frames * cfg->width * cfg->height * 3;
  for (size_t i = 0; got_rgb.frames == p.frames && i < bytes; i++)
    max_byte = MAX (max_byte, abs ((int) ref_rgb.rgb[i] - (int) got_rgb.rgb[i]));
  printf ("%s, %s attention, %d ranks: %d frames; latent max |diff| %.3g (max |value| %.3g), "
          "frame bytes max |diff| %d\n", vdit_model_get_info (model)->name, argv[2], size,
          got_rgb.frames, max_diff, max_ref, max_byte);
  /* fp32: the same sums in another order (GEMMs of fewer rows, attention of fewer heads) */
  const gboolean ok = got_rgb.frames == p.frames && max_diff <= 1e-4 * fmax (1.0, max_ref) &&
                      max_byte <= 1;
  g_free (ref), g_free (got), g_free (ref_rgb.rgb), g_free (got_rgb.rgb);
  vdit_ctx_free (ctx);
  vdit_model_free (model);
  vdit_comm_free (&comm);
  return ok ? 0 : 1;
}
