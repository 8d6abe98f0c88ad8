#include "test_model.h"

#include <gst/check/gstcheck.h>

gchar *model_dir;

void
setup_model (void)
{
  const gchar *env = g_getenv ("VDIT_TEST_MODEL");
  const gchar *root = g_getenv ("VDIT_SOURCE_ROOT");

  if (env != NULL)
    model_dir = g_strdup (env);
  else
    model_dir = g_build_filename (root != NULL ? root : ".", "models", "tiny",
        NULL);
  fail_unless (g_file_test (model_dir, G_FILE_TEST_IS_DIR),
      "model %s is missing", model_dir);
}

void
teardown_model (void)
{
  g_clear_pointer (&model_dir, g_free);
}
