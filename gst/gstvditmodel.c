/* Where vditsrc looks for models: $VDIT_MODEL_PATH, the installed data
 * directory, then the source tree for a plug-in used from its build tree.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvditmodel.h"

#include <string.h>

/* Directories that hold models, most specific first: $VDIT_MODEL_PATH, the
 * installed data directory, then the source tree for uninstalled use. */
static gchar **
gst_vdit_model_dirs (void)
{
  GPtrArray *dirs = g_ptr_array_new ();
  const gchar *env = g_getenv ("VDIT_MODEL_PATH");

  if (env != NULL && *env != '\0') {
    gchar **parts = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);

    for (gchar ** p = parts; *p != NULL; p++) {
      if (**p != '\0')
        g_ptr_array_add (dirs, g_strdup (*p));
    }
    g_strfreev (parts);
  }
  g_ptr_array_add (dirs, g_strdup (VDIT_MODELS_DIR));
#ifdef VDIT_UNINSTALLED_MODELS_DIR
  g_ptr_array_add (dirs, g_strdup (VDIT_UNINSTALLED_MODELS_DIR));
#endif
  g_ptr_array_add (dirs, NULL);
  return (gchar **) g_ptr_array_free (dirs, FALSE);
}

static gboolean
gst_vdit_model_is_dir (const gchar * dir)
{
  gchar *config = g_build_filename (dir, "config.json", NULL);
  gboolean found = g_file_test (config, G_FILE_TEST_IS_REGULAR);

  g_free (config);
  return found;
}

/* A directory path is used as given; a bare name ("tiny") is looked up in the
 * model directories; NULL finds the default model ("default", else "tiny"). */
gchar *
gst_vdit_model_find (const gchar * name)
{
  static const gchar *const defaults[] = { "default", "tiny", NULL };
  const gchar *const single[] = { name, NULL };
  const gchar *const *names = name != NULL ? single : defaults;
  gchar **dirs;
  gchar *found = NULL;

  if (name != NULL && (strchr (name, G_DIR_SEPARATOR) != NULL ||
          g_file_test (name, G_FILE_TEST_IS_DIR)))
    return g_strdup (name);

  dirs = gst_vdit_model_dirs ();
  for (gchar ** d = dirs; *d != NULL && found == NULL; d++) {
    /* an entry of VDIT_MODEL_PATH may be a model directory itself */
    if (name == NULL && gst_vdit_model_is_dir (*d)) {
      found = g_strdup (*d);
      break;
    }
    for (guint i = 0; names[i] != NULL && found == NULL; i++) {
      gchar *path = g_build_filename (*d, names[i], NULL);

      if (gst_vdit_model_is_dir (path))
        found = path;
      else
        g_free (path);
    }
  }
  g_strfreev (dirs);
  return found;
}
