/* `vdit bench vae`: the CausalVideoVAE decode of a random latent, timed with its layers
 * on the host (`--device cpu`) or on the GPU (`--device cuda`); one JSON line per latent
 * shape. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_timing.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "json_writer.h"
#include "vae_decoder.h"
#include "vae_ops.h"

/* A decode calls one slot per kind (backend_timing.h), so the kinds read as its layers. */
G_STATIC_ASSERT (VDIT_OP_KINDS == 5);
static const char *const kind_names[VDIT_OP_KINDS] = {
  [VDIT_OP_GEMM] = "conv3d", [VDIT_OP_ATTENTION] = "attention",
  [VDIT_OP_NORM] = "group_norm", [VDIT_OP_ELEMENTWISE] = "upsample",
  [VDIT_OP_TRANSFER] = "transfer",
};

typedef struct {
  int repeat, warmup;
  gboolean breakdown;
} bench_args;

typedef struct {
  int T, h, w;              /* latent frames and sides */
  int chunks, tiles;        /* temporal chunks, spatial tiles per chunk */
  double flops;
  double ms, ms_min, ms_median; /* mean, fastest and median timed decode */
  vdit_op_times per_decode; /* with breakdown: the timed decodes' mean per kind */
  gboolean have_peak;
  size_t peak_bytes;        /* backend memory high-water mark over the timed decodes */
  uint64_t plan_bytes;      /* what the memory plan expects where the layers run */
  gint64 nonfinite;         /* in the warm-up decodes' frames; -1: none ran */
  unsigned conv_ran;        /* the backend's vae_conv_ran over the timed decodes; 0: unknown */
} bench_result;

/* The frames a decode hands out: counted, and in warm-ups checked for NaN and inf (a
 * random decoder whose values overflow would time nothing useful). */
typedef struct {
  size_t frame_values;
  int frames;
  gboolean check;
  gint64 nonfinite;
} frame_sink;

static gboolean
on_frames (void *user_data, int first, int n, const float *frames, GError **error)
{
  frame_sink *s = user_data;
  if (first != s->frames) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "the decoder handed out frame %d after %d frames", first, s->frames);
    return FALSE;
  }
  s->frames += n;
  for (size_t i = 0; s->check && i < (size_t) n * s->frame_values; i++)
    s->nonfinite += !isfinite (frames[i]);
  return TRUE;
}

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* One decode of latent (T, h, w, C), timed on the host from the latent on the host to
 * the last frame handed out (the GPU's work included: the frames come back through it). */
static gboolean
decode (vdit_vae_decoder *v, const vdit_vae_device *dev, const float *latent, int T, int h,
        int w, frame_sink *s, double *ms, GError **error)
{
  s->frames = 0;
  s->frame_values = (size_t) 3 * h * w * VDIT_VAE_SPACE_FACTOR * VDIT_VAE_SPACE_FACTOR;
  const gint64 t0 = g_get_monotonic_time ();
  if (!vdit_vae_decode_stream_on (v, dev, latent, T, h, w, on_frames, s, error))
    return FALSE;
  *ms = (g_get_monotonic_time () - t0) / 1000.0;
  if (s->frames != 1 + VDIT_VAE_TIME_FACTOR * (T - 1)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                 "decoded %d frames of %d latent frames", s->frames, T);
    return FALSE;
  }
  return TRUE;
}

/* The latent's first n frames, first th rows and tw columns, as a latent of its own. */
static float *
corner (const float *latent, int h, int w, int c, int n, int th, int tw)
{
  float *out = g_new (float, (size_t) n * th * tw * c);
  for (int t = 0; t < n; t++)
    for (int y = 0; y < th; y++)
      memcpy (out + (((size_t) t * th + y) * tw) * c, latent + (((size_t) t * h + y) * w) * c,
              sizeof (float) * tw * c);
  return out;
}

/* Warm-ups (first shape only: the decoder, kernels and memory pool then serve every
 * shape) decode the first tile of the first temporal chunk, which runs every kernel on
 * the largest layers a tiled decode holds on the device; then the timed decodes. */
static gboolean
bench_shape (vdit_vae_decoder *v, vdit_backend *be, const vdit_vae_device *dev,
             const bench_args *a, int warmup, bench_result *r, GError **error)
{
  const int c = vdit_vae_decoder_channels (v);
  const size_t n = (size_t) r->T * r->h * r->w * c;
  const vdit_vae_tiling tl = vdit_vae_decoder_get_tiling (v);
  vdit_backend_timing *timing = NULL;
  frame_sink sink = { 0 };
  gboolean ok = FALSE;
  double ms, *times_ms = NULL;
  float *latent = g_try_new (float, n);
  if (latent == NULL) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                 "out of host memory for a latent of %zu values", n);
    return FALSE;
  }
  GRand *rng = g_rand_new_with_seed (1);
  for (size_t i = 0; i < n; i++) /* about the spread of the DiT's latents */
    latent[i] = (float) g_rand_double_range (rng, -1.0, 1.0);
  g_rand_free (rng);

  r->flops = vdit_vae_decoder_flops (v, r->T, r->h, r->w, &r->chunks, &r->tiles);
  uint64_t host, device;
  vdit_vae_decoder_peak_split (v, r->T, r->h, r->w, dev != NULL, &host, &device);
  r->plan_bytes = dev ? device + vdit_vae_decoder_weight_bytes (v) : host;
  r->nonfinite = warmup > 0 ? 0 : -1;
  sink.check = TRUE;
  const gboolean tiled = r->chunks * r->tiles > 1;
  const int wt = tiled ? MIN (r->T, tl.latent_t) : r->T;
  const int wh = tiled ? MIN (r->h, tl.latent) : r->h, ww = tiled ? MIN (r->w, tl.latent) : r->w;
  float *first = warmup > 0 ? corner (latent, r->h, r->w, c, wt, wh, ww) : NULL;
  for (int i = 0; i < warmup; i++) {
    const gboolean done = decode (v, dev, first, wt, wh, ww, &sink, &ms, error);
    r->nonfinite += sink.nonfinite;
    sink.nonfinite = 0;
    if (!done) {
      g_free (first);
      goto out;
    }
  }
  g_free (first);
  sink.check = FALSE;

  if (be->iface->mem_peak)
    be->iface->mem_peak (be->context, TRUE, &r->peak_bytes);
  if (be->iface->vae_conv_ran)
    be->iface->vae_conv_ran (be->context, TRUE);
  vdit_op_times times = { 0 };
  if (a->breakdown && dev)
    timing = vdit_backend_timing_wrap (be);
  else if (a->breakdown)
    vdit_vae_decoder_time_host_ops (v, &times);
  double total = 0.0;
  times_ms = g_new (double, a->repeat);
  for (int i = 0; i < a->repeat; i++) {
    if (!decode (v, dev, latent, r->T, r->h, r->w, &sink, &times_ms[i], error))
      goto out;
    total += times_ms[i];
  }
  qsort (times_ms, a->repeat, sizeof (double), cmp_double);
  r->ms_min = times_ms[0];
  r->ms_median = a->repeat % 2 ? times_ms[a->repeat / 2]
                               : 0.5 * (times_ms[a->repeat / 2 - 1] + times_ms[a->repeat / 2]);
  if (timing && !vdit_backend_timing_collect (timing, &times, error))
    goto out;
  for (int k = 0; k < VDIT_OP_KINDS; k++) {
    r->per_decode.ms[k] = times.ms[k] / a->repeat;
    r->per_decode.calls[k] = times.calls[k] / a->repeat;
  }
  r->ms = total / a->repeat;
  if (be->iface->mem_peak)
    r->have_peak = be->iface->mem_peak (be->context, FALSE, &r->peak_bytes);
  if (be->iface->vae_conv_ran)
    r->conv_ran = be->iface->vae_conv_ran (be->context, FALSE);
  ok = TRUE;
out:
  vdit_vae_decoder_time_host_ops (v, NULL);
  if (timing)
    vdit_backend_timing_unwrap (be, timing);
  g_free (times_ms);
  g_free (latent);
  return ok;
}

static double
round3 (double x)
{
  return round (x * 1000) / 1000;
}

static void
print_result (const char *model, const char *backend, const bench_args *a, gboolean whole,
              int warmup, const bench_result *r)
{
  const int frames = 1 + VDIT_VAE_TIME_FACTOR * (r->T - 1);
  vdit_json j;
  vdit_json_init (&j);
  vdit_json_begin_object (&j, NULL);
  vdit_json_string (&j, "bench", "vae");
  vdit_json_string (&j, "model", model);
  vdit_json_string (&j, "backend", backend);
  /* the host ops are f32; a GPU backend's convolutions as VDIT_CUDA_VAE_PRECISION says */
  vdit_json_string (&j, "precision", g_str_equal (backend, "cpu")
                                         ? "f32"
                                         : vdit_vae_precision_name (vdit_vae_gpu_precision ()));
  /* and the method its convolutions ran on: VDIT_CUDA_VAE_CONV's, or what it fell back
   * to ("cudnn+gemm": some of each) */
  GString *conv = g_string_new (g_str_equal (backend, "cpu") ? "im2col-openblas" : NULL);
  for (unsigned m = 0; m <= VDIT_VAE_CONV_GEMM; m++)
    if (r->conv_ran & (1u << m))
      g_string_append_printf (conv, "%s%s", conv->len ? "+" : "",
                              vdit_vae_conv_name ((VditVaeConvMethod) m));
  if (conv->len == 0) /* a backend that does not say */
    g_string_append (conv, vdit_vae_conv_name (vdit_vae_gpu_conv ()));
  vdit_json_string (&j, "conv", conv->str);
  g_string_free (conv, TRUE);
  vdit_json_int (&j, "latent_frames", r->T);
  vdit_json_int (&j, "latent_height", r->h);
  vdit_json_int (&j, "latent_width", r->w);
  vdit_json_int (&j, "frames", frames);
  vdit_json_int (&j, "height", r->h * VDIT_VAE_SPACE_FACTOR);
  vdit_json_int (&j, "width", r->w * VDIT_VAE_SPACE_FACTOR);
  vdit_json_string (&j, "decode", whole || r->chunks * r->tiles == 1 ? "whole" : "tiled");
  vdit_json_int (&j, "chunks", r->chunks);
  vdit_json_int (&j, "tiles", r->tiles);
  vdit_json_string (&j, "timed", "latent on the host to f32 frames on the host");
  vdit_json_double (&j, "gflop", round3 (r->flops / 1e9));
  vdit_json_double (&j, "ms", round3 (r->ms));
  vdit_json_double (&j, "ms_min", round3 (r->ms_min));
  vdit_json_double (&j, "ms_median", round3 (r->ms_median));
  vdit_json_double (&j, "ms_per_frame", round3 (r->ms / frames));
  vdit_json_double (&j, "tflops", round (r->flops / (r->ms * 1e-3) / 1e12 * 1e4) / 1e4);
  vdit_json_int (&j, "repeat", a->repeat);
  vdit_json_int (&j, "warmup", warmup);
  if (r->nonfinite >= 0)
    vdit_json_int (&j, "nonfinite", r->nonfinite);
  if (r->have_peak)
    vdit_json_double (&j, "peak_gib", round3 (r->peak_bytes / 1073741824.0));
  vdit_json_double (&j, "plan_gib", round3 (r->plan_bytes / 1073741824.0));
  if (a->breakdown) {
    double sum = 0.0;
    vdit_json_begin_object (&j, "breakdown");
    for (int k = 0; k < VDIT_OP_KINDS; k++) {
      vdit_json_double (&j, kind_names[k], round3 (r->per_decode.ms[k]));
      sum += r->per_decode.ms[k];
    }
    /* host work between ops: tile cropping and blending, the frames' reorder */
    vdit_json_double (&j, "unaccounted", round3 (r->ms - sum));
    vdit_json_end_object (&j);
    vdit_json_begin_object (&j, "calls");
    for (int k = 0; k < VDIT_OP_KINDS; k++)
      vdit_json_int (&j, kind_names[k], r->per_decode.calls[k]);
    vdit_json_end_object (&j);
  }
  vdit_json_end_object (&j);
  vdit_json_print_line (&j);
}

/* "8,24" → {8, 24}; FALSE on anything else. */
static gboolean
parse_list (const char *text, GArray *out)
{
  g_auto (GStrv) parts = g_strsplit (text, ",", -1);
  for (int i = 0; parts[i]; i++) {
    guint64 n;
    if (!g_ascii_string_to_unsigned (g_strstrip (parts[i]), 10, 1, 100000, &n, NULL))
      return FALSE;
    int v = (int) n;
    g_array_append_val (out, v);
  }
  return out->len > 0;
}

/* --model DIR: a converted model (its vae/ folder) or a vae folder itself. */
static vdit_vae_decoder *
load_decoder (const char *dir, const char *config, uint64_t seed, GError **error)
{
  if (config != NULL)
    return vdit_vae_decoder_new_random (config, seed, error);
  g_autofree char *sub = g_build_filename (dir, "vae", NULL);
  return vdit_vae_decoder_load (g_file_test (sub, G_FILE_TEST_IS_DIR) ? sub : dir, error);
}

int
vdit_cmd_bench_vae (int argc, char **argv)
{
  const char *cmd = "vdit bench vae";
  char *model_dir = NULL, *config = NULL, *device_name = NULL, *seed_text = NULL;
  char *frames_text = NULL, *latent_text = NULL, *name = NULL;
  gboolean random_weights = FALSE, whole = FALSE;
  int height = 720, width = 1280, device_id = 0;
  bench_args a = { .repeat = 3, .warmup = 1 };
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      "A converted model directory (its vae/ folder) or a vae folder", "DIR" },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config,
      "A VAE config.json to build the decoder from (with --random-weights)", "FILE" },
    { "random-weights", 0, 0, G_OPTION_ARG_NONE, &random_weights,
      "Seeded random weights instead of vae.safetensors", NULL },
    { "seed", 0, 0, G_OPTION_ARG_STRING, &seed_text, "Seed of the random weights", "X" },
    { "latent-frames", 0, 0, G_OPTION_ARG_STRING, &latent_text,
      "Latent frames, comma-separated (default 8)", "T,..." },
    { "frames", 'f', 0, G_OPTION_ARG_STRING, &frames_text,
      "Or video frames, 1 + 4k each (29 = 8 latent frames, 93 = 24)", "N,..." },
    { "height", 0, 0, G_OPTION_ARG_INT, &height, "Video height, a multiple of 8 "
      "(default 720)", "PX" },
    { "width", 0, 0, G_OPTION_ARG_INT, &width, "Video width, a multiple of 8 "
      "(default 1280)", "PX" },
    { "whole", 0, 0, G_OPTION_ARG_NONE, &whole,
      "Decode in one piece, without the config's temporal chunks and spatial tiles", NULL },
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device_name, "cpu or cuda (default cpu)",
      "DEV" },
    { "device-id", 0, 0, G_OPTION_ARG_INT, &device_id, "GPU to use (default 0)", "ID" },
    { "repeat", 'r', 0, G_OPTION_ARG_INT, &a.repeat, "Timed decodes (default 3)", "R" },
    { "warmup", 'w', 0, G_OPTION_ARG_INT, &a.warmup,
      "Untimed decodes of the first tile, before the first shape (default 1)", "W" },
    { "breakdown", 0, 0, G_OPTION_ARG_NONE, &a.breakdown,
      "Also time each kind of layer (conv3d, group_norm, upsample, attention, transfer)",
      NULL },
    { NULL }
  };
  int status = VDIT_EXIT_OK;
  GError *error = NULL;
  GArray *shapes = g_array_new (FALSE, FALSE, sizeof (int));
  vdit_vae_decoder *v = NULL;
  vdit_vae_device *dev = NULL;
  vdit_backend be = { 0 };
  GOptionContext *octx = g_option_context_new ("- time the CausalVideoVAE decode");
  g_option_context_add_main_entries (octx, entries, NULL);
  g_option_context_set_description (octx,
      "Prints one JSON line per latent shape:\n"
      "  {\"bench\":\"vae\",\"model\":..,\"backend\":..,\"precision\":\"f32\","
      "\"latent_frames\":..,\"latent_height\":..,\n"
      "   \"latent_width\":..,\"frames\":..,\"height\":..,\"width\":..,"
      "\"decode\":\"tiled\"|\"whole\",\"chunks\":..,\n"
      "   \"tiles\":..,\"timed\":..,\"gflop\":..,\"ms\":..,\"ms_min\":..,"
      "\"ms_median\":..,\"ms_per_frame\":..,\"tflops\":..,\n"
      "   \"repeat\":..,\"warmup\":..}\n"
      "The latent is random (seed 1), the decoder's weights those of --model or seeded\n"
      "random ones (--config FILE --random-weights; tools/bench/osp12-vae.json is\n"
      "Open-Sora-Plan v1.2's). A decode is timed from the latent on the host to the last\n"
      "f32 frame handed out on the host, as a generation decodes: in the config's\n"
      "temporal chunks of spatial tiles (\"chunks\" of \"tiles\" each, seams blended on\n"
      "the host), or in one piece with --whole. ms is the mean, ms_min the fastest,\n"
      "ms_median the median; ms_per_frame is ms over the video frames. gflop counts the\n"
      "convolutions and attention GEMMs of every tile (2 per multiply-add), tflops that\n"
      "over ms. nonfinite: NaN or inf values in the warm-ups' frames (a warm-up decodes the\n"
      "first tile of the first chunk, or the whole latent with --whole). peak_gib (CUDA):\n"
      "the most device memory in use at once during the timed decodes, weights included;\n"
      "plan_gib: what the memory plan expects there (device memory with the weights on\n"
      "CUDA, host memory on the CPU). --breakdown adds \"breakdown\": ms per decode of each\n"
      "kind of layer (CUDA events on the GPU's stream, the host clock on the CPU) and\n"
      "\"unaccounted\" (ms minus their sum: tile blending and frame reorder on the host),\n"
      "with \"calls\" per decode. --device cpu runs the host reference layers (f32, OpenBLAS\n"
      "on one thread, as `vdit generate --device cpu` decodes); cuda the GPU layers (f32,\n"
      "no TF32). tools/bench/peers.py --vae times PyTorch's decode of the same shapes.\n");
  if (!vdit_cli_parse (octx, cmd, &argc, &argv, &status))
    goto out;

  if (argc > 1) {
    status = vdit_cli_usage (cmd, "unexpected argument '%s'", argv[1]);
    goto out;
  }
  if ((status = vdit_cli_check_model_source (cmd, model_dir, config, random_weights)) !=
      VDIT_EXIT_OK)
    goto out;
  if (frames_text && latent_text) {
    status = vdit_cli_usage (cmd, "give --frames or --latent-frames, not both");
    goto out;
  }
  if (!parse_list (frames_text ? frames_text : latent_text ? latent_text : "8", shapes)) {
    status = vdit_cli_usage (cmd, "--frames and --latent-frames take positive integers, "
                                  "comma-separated");
    goto out;
  }
  for (guint i = 0; frames_text && i < shapes->len; i++) {
    int *f = &g_array_index (shapes, int, i);
    if ((*f - 1) % VDIT_VAE_TIME_FACTOR != 0) {
      status = vdit_cli_usage (cmd, "%d frames: the VAE makes 1 + 4k frames (29, 93, ...)",
                               *f);
      goto out;
    }
    *f = (*f - 1) / VDIT_VAE_TIME_FACTOR + 1;
  }
  if (height < VDIT_VAE_SPACE_FACTOR || width < VDIT_VAE_SPACE_FACTOR ||
      height % VDIT_VAE_SPACE_FACTOR || width % VDIT_VAE_SPACE_FACTOR ||
      height > 16384 || width > 16384) {
    status = vdit_cli_usage (cmd, "--height and --width must be multiples of 8 "
                                  "(up to 16384)");
    goto out;
  }
  if (a.repeat < 1 || a.warmup < 0) {
    status = vdit_cli_usage (cmd, "--repeat must be at least 1, --warmup not negative");
    goto out;
  }
  uint64_t seed;
  if (!vdit_cli_parse_seed (seed_text, &seed, &error)) {
    status = vdit_cli_usage (cmd, "%s", error->message);
    g_clear_error (&error);
    goto out;
  }
  const gboolean cuda = device_name && g_str_equal (device_name, "cuda");
  if (device_name && !cuda && !g_str_equal (device_name, "cpu")) {
    status = vdit_cli_usage (cmd, "unknown device '%s' (expected cpu or cuda)", device_name);
    goto out;
  }

  /* the CPU backend also leaves OpenBLAS on one thread, as in a generation */
  if (!(cuda ? vdit_backend_cuda_init (&be, device_id, &error)
             : vdit_backend_cpu_init (&be, 0, &error)) ||
      !(v = load_decoder (model_dir, config, seed, &error)) ||
      (cuda && !(dev = vdit_vae_device_new (v, &be, &error))))
    goto fail;
  if (whole) {
    vdit_vae_tiling tl = vdit_vae_decoder_get_tiling (v);
    tl.latent_t = 0;
    vdit_vae_decoder_set_tiling (v, &tl);
  }
  name = g_path_get_basename (config ? config : model_dir);
  const int h = height / VDIT_VAE_SPACE_FACTOR, w = width / VDIT_VAE_SPACE_FACTOR;
  for (guint i = 0; i < shapes->len; i++) {
    bench_result r = { .T = g_array_index (shapes, int, i), .h = h, .w = w };
    const int warmup = i == 0 ? a.warmup : 0;
    if (!bench_shape (v, &be, dev, &a, warmup, &r, &error))
      goto fail;
    print_result (name, be.iface->name, &a, whole, warmup, &r);
  }
  goto out;

fail:
  status = vdit_cli_fail (error);
out:
  vdit_vae_device_free (dev);
  vdit_vae_decoder_free (v);
  if (be.iface)
    vdit_backend_free (&be);
  g_array_unref (shapes);
  g_option_context_free (octx);
  g_free (model_dir);
  g_free (config);
  g_free (device_name);
  g_free (seed_text);
  g_free (frames_text);
  g_free (latent_text);
  g_free (name);
  return status;
}
