/* Frame output for `vdit generate`: a y4m stream or numbered PNG files, written under
 * temporary names that replace the real ones only when the sink is committed. */
#include "frame_sink.h"

#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "output_file.h"
#include "png_writer.h"
#include "y4m_writer.h"

struct vdit_frame_sink {
  char *path;         /* --out as given, for messages */
  int width, height;
  int count;
  /* y4m */
  char *target;       /* the file the clip replaces (path, or where its link leads) */
  char *tmp;          /* the temporary beside target; NULL when written in place */
  FILE *file;
  vdit_y4m_writer *y4m;
  /* PNG folder */
  gboolean folder;
  GPtrArray *created; /* folders open made, deepest first */
  GPtrArray *tmps;    /* frame i's temporary file */
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

/* Creates the folder and any missing parents, remembering which were made. */
static gboolean
make_folder (vdit_frame_sink *sink, GError **error)
{
  char *dir = g_strdup (sink->path);
  for (size_t n = strlen (dir); n > 1 && dir[n - 1] == '/'; n--)
    dir[n - 1] = '\0';
  for (char *d = g_strdup (dir); d != NULL;) {
    if (g_file_test (d, G_FILE_TEST_EXISTS)) {
      g_free (d);
      break;
    }
    g_ptr_array_add (sink->created, d);
    char *parent = g_path_get_dirname (d);
    if (g_str_equal (parent, d)) {
      g_free (parent);
      break;
    }
    d = parent;
  }
  gboolean ok = g_mkdir_with_parents (dir, 0777) == 0;
  if (!ok) {
    int saved = errno;
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                 "cannot create folder '%s': %s", sink->path, g_strerror (saved));
  }
  g_free (dir);
  return ok;
}

static void
sink_free (vdit_frame_sink *sink)
{
  if (sink->created != NULL)
    g_ptr_array_unref (sink->created);
  if (sink->tmps != NULL)
    g_ptr_array_unref (sink->tmps);
  g_free (sink->path);
  g_free (sink->target);
  g_free (sink->tmp);
  g_free (sink);
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
    sink->created = g_ptr_array_new_with_free_func (g_free);
    sink->tmps = g_ptr_array_new_with_free_func (g_free);
    if (!make_folder (sink, error)) {
      vdit_frame_sink_close (sink, FALSE, NULL);
      return NULL;
    }
    return sink;
  }

  gboolean in_place = TRUE;
  if (g_str_equal (out, "-")) {
    /* For piping into a player or gst-launch-1.0 fdsrc. */
    sink->file = stdout;
  } else {
    sink->target = vdit_output_file_resolve (out, &in_place);
    if (in_place)
      sink->file = g_fopen (sink->target, "wb");
    else
      sink->file = vdit_output_file_create (sink->target, &sink->tmp, error);
    if (sink->file == NULL) {
      if (in_place) {
        int saved = errno;
        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                     "cannot open '%s': %s", out, g_strerror (saved));
      }
      sink_free (sink);
      return NULL;
    }
  }
  sink->y4m = vdit_y4m_writer_new (sink->file, sink->file == stdout ? "standard output" : out,
                                   width, height, fps, error);
  if (sink->y4m == NULL) {
    vdit_frame_sink_close (sink, FALSE, NULL);
    return NULL;
  }
  return sink;
}

/* Frame index to a temporary file in the folder; nothing of it stays on failure. */
static gboolean
write_png (vdit_frame_sink *sink, int index, const uint8_t *rgb, int stride, GError **error)
{
  char name[32];
  g_snprintf (name, sizeof name, "frame-%04d.png", index);
  char *final = g_build_filename (sink->path, name, NULL);
  char *tmp = NULL;
  FILE *file = vdit_output_file_create (final, &tmp, error);
  gboolean ok = file != NULL;
  if (ok) {
    ok = vdit_png_write_rgb (file, final, rgb, sink->width, sink->height, stride, error);
    /* Closed (and synced) now: a full disk shows up at this frame, not at the commit. */
    ok = vdit_output_file_close (file, final, ok ? error : NULL) && ok;
    if (ok)
      g_ptr_array_add (sink->tmps, g_steal_pointer (&tmp));
    else
      g_unlink (tmp);
  }
  g_free (tmp);
  g_free (final);
  return ok;
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
  gboolean ok = sink->folder ? write_png (sink, index, rgb, stride, error)
                             : vdit_y4m_writer_write_rgb (sink->y4m, rgb, stride, error);
  if (ok)
    sink->count++;
  return ok;
}

int
vdit_frame_sink_count (const vdit_frame_sink *sink)
{
  return sink->count;
}

/* Renames the frames' temporaries to frame-NNNN.png; on an error the rest are
 * removed. */
static gboolean
commit_folder (vdit_frame_sink *sink, GError **error)
{
  gboolean ok = TRUE;
  for (guint i = 0; i < sink->tmps->len; i++) {
    const char *tmp = g_ptr_array_index (sink->tmps, i);
    if (!ok) {
      g_unlink (tmp);
      continue;
    }
    char name[32];
    g_snprintf (name, sizeof name, "frame-%04u.png", i);
    char *final = g_build_filename (sink->path, name, NULL);
    ok = vdit_output_file_commit (tmp, final, error);
    g_free (final);
  }
  return ok;
}

static void
discard_folder (vdit_frame_sink *sink)
{
  for (guint i = 0; i < sink->tmps->len; i++)
    g_unlink (g_ptr_array_index (sink->tmps, i));
  /* Deepest first (one mkdir may have failed); stops at a folder something else has put
   * a file in. */
  for (guint i = 0; i < sink->created->len; i++)
    if (g_rmdir (g_ptr_array_index (sink->created, i)) != 0 && errno != ENOENT)
      break;
}

static gboolean
close_y4m (vdit_frame_sink *sink, gboolean commit, GError **error)
{
  if (sink->y4m != NULL)
    vdit_y4m_writer_free (sink->y4m);
  if (sink->tmp != NULL && !commit) {
    fclose (sink->file);
    g_unlink (sink->tmp);
    return TRUE;
  }
  if (sink->tmp != NULL) {
    if (!vdit_output_file_close (sink->file, sink->path, error)) {
      g_unlink (sink->tmp);
      return FALSE;
    }
    return vdit_output_file_commit (sink->tmp, sink->target, error);
  }
  /* Standard output, or a device or FIFO written in place. */
  if ((sink->file == stdout ? fflush (stdout) : fclose (sink->file)) == 0)
    return TRUE;
  int saved = errno;
  g_set_error (commit ? error : NULL, G_IO_ERROR, g_io_error_from_errno (saved),
               "cannot write '%s': %s", sink->file == stdout ? "standard output" : sink->path,
               g_strerror (saved));
  return FALSE;
}

gboolean
vdit_frame_sink_close (vdit_frame_sink *sink, gboolean commit, GError **error)
{
  gboolean ok = TRUE;
  if (!sink->folder)
    ok = close_y4m (sink, commit, error);
  else if (commit)
    ok = commit_folder (sink, error);
  else
    discard_folder (sink);
  sink_free (sink);
  return ok;
}
