#include "test_model.h"

#include <gst/check/gstcheck.h>

#include "vdit.h"

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

const gchar *
test_device_from_env (void)
{
  const gchar *device = g_getenv ("VDIT_TEST_DEVICE");

  if (device == NULL || *device == '\0')
    return "cpu";
  if (g_str_equal (device, "cuda")) {
    if (!vdit_cuda_available (NULL)) {
      g_print ("# skip: VDIT_TEST_DEVICE=cuda, but no usable CUDA device (or a "
          "build without CUDA)\n");
      return NULL;
    }
    g_setenv ("CK_FORK", "no", TRUE);
  }
  return device;
}
