/* Loads a model directory's config.json and weights as the engine does (memory-mapped)
 * without building a backend, and prints what that cost: the peak resident set (VmHWM),
 * the resident set now (VmRSS, of which RssFile is mapped file pages) and the time. Used
 * by tools/bench/osp-full-convert.sh on a converted full-size Open-Sora-Plan model,
 * whose decoder the engine cannot load yet.
 *
 *   load_weights MODEL_DIR */
#include "config.h"
#include "weights.h"

#include <stdio.h>
#include <string.h>

static void
print_status_line (const char *key)
{
  g_autofree char *status = NULL;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return;
  const char *at = strstr (status, key);
  if (at == NULL)
    return;
  const char *end = strchr (at, '\n');
  printf ("%.*s\n", (int) (end ? end - at : (long) strlen (at)), at);
}

int
main (int argc, char **argv)
{
  if (argc != 2) {
    fprintf (stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  g_autofree char *cfg_path = g_build_filename (argv[1], "config.json", NULL);
  vdit_config *cfg = vdit_config_load (cfg_path, &error);
  vdit_weights *w = cfg ? vdit_weights_load (argv[1], cfg, &error) : NULL;
  if (w == NULL) {
    fprintf (stderr, "load_weights: %s\n", error->message);
    g_error_free (error);
    vdit_config_free (cfg);
    return 1;
  }
  gint64 t1 = g_get_monotonic_time ();
  g_autofree char *dtypes = vdit_weights_dtype_summary (w);
  printf ("loaded %s: %" G_GINT64_FORMAT " parameters, %s, in %.2f s\n", argv[1],
          (gint64) vdit_weights_n_params (w), dtypes, (t1 - t0) / 1e6);
  print_status_line ("VmHWM");
  print_status_line ("VmRSS");
  print_status_line ("RssFile");
  vdit_weights_free (w);
  vdit_config_free (cfg);
  return 0;
}
