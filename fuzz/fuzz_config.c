/* libFuzzer target: vdit_config_parse (config.json from bytes) on arbitrary input; an
 * accepted config must keep the bounds docs/model-format.md promises. */
#include "config.h"

#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size > VDIT_CONFIG_MAX_BYTES)
    return 0;
  /* NUL-terminated copy: what vdit_read_regular hands the parser */
  char *text = g_malloc (size + 1);
  memcpy (text, data, size);
  text[size] = '\0';
  GError *error = NULL;
  vdit_config *cfg = vdit_config_parse (text, (gssize) size, "fuzz.json", &error);
  if (cfg == NULL) {
    if (error == NULL || error->message == NULL)
      abort ();
    g_error_free (error);
  } else {
    if (cfg->frames < 1 || cfg->frames > VDIT_MAX_FRAMES || cfg->width < 1 ||
        cfg->width > VDIT_MAX_VIDEO_SIDE || cfg->height < 1 ||
        cfg->height > VDIT_MAX_VIDEO_SIDE || cfg->sampler.steps < 1 ||
        cfg->sampler.steps > VDIT_MAX_STEPS)
      abort ();
    if (cfg->attention.plan != NULL)
      for (int i = 0; i < cfg->dit.depth; i++)
        (void) cfg->attention.plan[i];
    for (int i = 0; i < cfg->attention.n_search_steps; i++)
      (void) cfg->attention.search_steps[i];
    vdit_config_free (cfg);
  }
  g_free (text);
  return 0;
}
