/* Frame output for `vdit generate`: a y4m stream or numbered PNG files. */
#include "frame_sink.h"

#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "png_writer.h"
#include "y4m_writer.h"

struct vdit_frame_sink {
  char *path;
  gboolean folder;
  gboolean created_folder;
  vdit_y4m_writer *y4m;
  int width, height;
  int count;
};

static gboolean
is_folder_path (const char *out)
{
  return g_str_has_suffix (out, "/") || g_file_test (out, G_FILE_TEST_IS_DIR);
}

static gboolean
has_suffix_nocase (const char *s, const char *suffix)
{
  size_t n = strlen (s), m = strlen (suffix);
  return n >= m && g_ascii_strcasecmp (s + n - m, suffix) == 0;
}

static gboolean
is_y4m_path (const char *out)
{
  return g_str_equal (out, "-") || has_suffix_nocase (out, ".y4m");
}

gboolean
vdit_frame_sink_check (const char *out, GError **error)
{
  if (out == NULL || out[0] == '\0') {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "no output given (--out)");
    return FALSE;
  }
  if (!is_folder_path (out) && !is_y4m_path (out)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                 "cannot tell the output format of '%s': name a .y4m file, '-' for y4m on "
                 "standard output, or a folder ending in '/' for PNG frames", out);
    return FALSE;
  }
  return TRUE;
}

vdit_frame_sink *
vdit_frame_sink_open (const char *out, int width, int height, double fps, GError **error)
{
  if (!vdit_frame_sink_check (out, error))
    return NULL;
  vdit_frame_sink *sink = g_new0 (vdit_frame_sink, 1);
  sink->width = width;
  sink->height = height;
  sink->path = g_strdup (out);
  if (is_folder_path (out)) {
    sink->folder = TRUE;
    sink->created_folder = !g_file_test (out, G_FILE_TEST_EXISTS);
    if (g_mkdir_with_parents (out, 0777) != 0) {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "cannot create folder '%s': %s", out, g_strerror (saved));
      goto fail;
    }
  } else {
    sink->y4m = vdit_y4m_writer_open (out, width, height, fps, error);
    if (sink->y4m == NULL)
      goto fail;
  }
  return sink;

fail:
  g_free (sink->path);
  g_free (sink);
  return NULL;
}

gboolean
vdit_frame_sink_write (vdit_frame_sink *sink, int index, const uint8_t *rgb, int width,
                       int height, int stride, GError **error)
{
  if (index != sink->count || width != sink->width || height != sink->height) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "unexpected frame %d of %dx%d (expected frame %d of %dx%d)", index, width,
                 height, sink->count, sink->width, sink->height);
    return FALSE;
  }
  if (sink->folder) {
    char name[32];
    g_snprintf (name, sizeof name, "frame-%04d.png", index);
    char *file = g_build_filename (sink->path, name, NULL);
    gboolean ok = vdit_png_write_rgb (file, rgb, width, height, stride, error);
    g_free (file);
    if (!ok)
      return FALSE;
  } else if (!vdit_y4m_writer_write_rgb (sink->y4m, rgb, stride, error)) {
    return FALSE;
  }
  sink->count++;
  return TRUE;
}

int
vdit_frame_sink_count (const vdit_frame_sink *sink)
{
  return sink->count;
}

gboolean
vdit_frame_sink_close (vdit_frame_sink *sink, gboolean ok, GError **error)
{
  gboolean closed = TRUE;
  if (sink->y4m != NULL)
    closed = vdit_y4m_writer_close (sink->y4m, ok ? error : NULL);
  /* A failed run that produced nothing leaves nothing behind. */
  if (!ok && sink->count == 0) {
    if (!sink->folder && !g_str_equal (sink->path, "-"))
      g_unlink (sink->path);
    else if (sink->created_folder)
      g_rmdir (sink->path);
  }
  g_free (sink->path);
  g_free (sink);
  return closed;
}
