/* The frame output of `vdit generate` on its own: an existing output is replaced only on
 * commit (a finished run, or the frames of an interrupted one), a discarded sink leaves
 * nothing behind, and write errors name the file and the OS error. Paths the command line
 * cannot reach reliably: the tiny model decodes all its frames in microseconds, so no
 * signal lands between two of them. */
#include "frame_sink.h"
#include "output_file.h"
#include "png_writer.h"
#include "y4m_writer.h"

#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#define W 4
#define H 2
#define FRAME_BYTES (6 + 3 * W * H) /* "FRAME\n" and the three planes */

static const char precious[] = "an earlier clip the user wants to keep\n";
static uint8_t rgb[3 * W * H];

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static char *
new_dir (void)
{
  GError *error = NULL;
  char *dir = g_dir_make_tmp ("vdit-sink-XXXXXX", &error);
  g_assert_no_error (error);
  return dir;
}

/* The names in dir, sorted and joined by spaces (hidden ones too). */
static char *
listing (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_dir_close (d);
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  char *joined = g_strjoinv (" ", (char **) names->pdata);
  g_ptr_array_free (names, TRUE);
  return joined;
}

static void
assert_listing (const char *dir, const char *want)
{
  char *got = listing (dir);
  g_assert_cmpstr (got, ==, want);
  g_free (got);
}

static void
assert_contents (const char *path, const char *want, gssize size)
{
  char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  g_assert_cmpmem (data, len, want, size < 0 ? strlen (want) : (gsize) size);
  g_free (data);
}

static void
remove_dir (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name (d)) != NULL) {
    char *path = g_build_filename (dir, name, NULL);
    g_assert_cmpint (g_unlink (path), ==, 0);
    g_free (path);
  }
  g_dir_close (d);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static vdit_frame_sink *
open_sink (const char *out)
{
  GError *error = NULL;
  vdit_frame_sink *sink = vdit_frame_sink_open (out, W, H, 8.0, &error);
  g_assert_no_error (error);
  return sink;
}

static void
write_frames (vdit_frame_sink *sink, int n)
{
  GError *error = NULL;
  for (int i = 0; i < n; i++)
    g_assert_true (vdit_frame_sink_write (sink, i, rgb, W, H, 3 * W, &error));
  g_assert_no_error (error);
}

/* Ctrl-C after two frames: the clip of those two frames replaces the old file. */
static void
test_y4m_commit_partial (void)
{
  char *dir = new_dir ();
  char *out = g_build_filename (dir, "keep.y4m", NULL);
  g_assert_true (g_file_set_contents (out, precious, -1, NULL));
  vdit_frame_sink *sink = open_sink (out);
  write_frames (sink, 2);
  assert_contents (out, precious, -1);

  GError *error = NULL;
  g_assert_true (vdit_frame_sink_close (sink, TRUE, &error));
  g_assert_no_error (error);
  char *data = NULL;
  gsize len = 0;
  g_assert_true (g_file_get_contents (out, &data, &len, NULL));
  g_assert_true (g_str_has_prefix (data, "YUV4MPEG2 W4 H2 F8:1 "));
  g_assert_cmpuint (len, ==, strchr (data, '\n') + 1 - data + 2 * FRAME_BYTES);
  g_free (data);
  assert_listing (dir, "keep.y4m");
  remove_dir (dir);
  g_free (out);
  g_free (dir);
}

/* A failure after frames: nothing of the run stays, the old file is as it was. */
static void
test_y4m_discard (void)
{
  char *dir = new_dir ();
  char *out = g_build_filename (dir, "keep.y4m", NULL);
  g_assert_true (g_file_set_contents (out, precious, -1, NULL));
  vdit_frame_sink *sink = open_sink (out);
  write_frames (sink, 2);
  g_assert_true (vdit_frame_sink_close (sink, FALSE, NULL));
  assert_contents (out, precious, -1);
  assert_listing (dir, "keep.y4m");

  /* A new file is not created at all. */
  char *fresh = g_build_filename (dir, "new.y4m", NULL);
  sink = open_sink (fresh);
  write_frames (sink, 1);
  g_assert_true (vdit_frame_sink_close (sink, FALSE, NULL));
  assert_listing (dir, "keep.y4m");
  remove_dir (dir);
  g_free (fresh);
  g_free (out);
  g_free (dir);
}

/* The frames of an interrupted run replace theirs; later frames of an earlier run stay. */
static void
test_png_commit_partial (void)
{
  char *dir = new_dir ();
  char *old[3];
  for (int i = 0; i < 3; i++) {
    char name[32];
    g_snprintf (name, sizeof name, "frame-%04d.png", i);
    old[i] = g_build_filename (dir, name, NULL);
    g_assert_true (g_file_set_contents (old[i], precious, -1, NULL));
  }
  vdit_frame_sink *sink = open_sink (dir);
  write_frames (sink, 2);
  for (int i = 0; i < 3; i++)
    assert_contents (old[i], precious, -1);
  g_assert_true (vdit_frame_sink_close (sink, TRUE, NULL));
  for (int i = 0; i < 2; i++) {
    char *data = NULL;
    g_assert_true (g_file_get_contents (old[i], &data, NULL, NULL));
    g_assert_cmpmem (data, 4, "\x89PNG", 4);
    g_free (data);
  }
  assert_contents (old[2], precious, -1);
  assert_listing (dir, "frame-0000.png frame-0001.png frame-0002.png");

  sink = open_sink (dir);
  write_frames (sink, 3);
  g_assert_true (vdit_frame_sink_close (sink, FALSE, NULL));
  assert_listing (dir, "frame-0000.png frame-0001.png frame-0002.png");
  assert_contents (old[2], precious, -1);

  remove_dir (dir);
  for (int i = 0; i < 3; i++)
    g_free (old[i]);
  g_free (dir);
}

/* Folders open made go again when the run is discarded. */
static void
test_png_discard_created (void)
{
  char *dir = new_dir ();
  char *out = g_strconcat (dir, "/a/b/", NULL);
  vdit_frame_sink *sink = open_sink (out);
  g_assert_true (g_file_test (out, G_FILE_TEST_IS_DIR));
  write_frames (sink, 2);
  g_assert_true (vdit_frame_sink_close (sink, FALSE, NULL));
  assert_listing (dir, "");
  remove_dir (dir);
  g_free (out);
  g_free (dir);
}

/* A temporary of a new file gets 0666 less the umask; of an existing one, its mode. */
static void
test_temporary_mode (void)
{
  char *dir = new_dir ();
  char *out = g_build_filename (dir, "clip.y4m", NULL);
  mode_t mask = umask (022);
  char *tmp = NULL;
  GStatBuf st;
  FILE *file = vdit_output_file_create (out, &tmp, NULL);
  g_assert_nonnull (file);
  g_assert_true (g_str_has_prefix (tmp, dir));
  char *base = g_path_get_basename (tmp);
  g_assert_true (g_str_has_prefix (base, ".clip.y4m."));
  g_assert_cmpint (g_stat (tmp, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0644);
  g_assert_true (vdit_output_file_close (file, out, NULL));
  g_assert_true (vdit_output_file_commit (tmp, out, NULL));
  g_free (tmp);
  g_free (base);

  g_assert_cmpint (g_chmod (out, 0604), ==, 0);
  file = vdit_output_file_create (out, &tmp, NULL);
  g_assert_cmpint (g_stat (tmp, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0604);
  g_assert_true (vdit_output_file_close (file, out, NULL));
  g_unlink (tmp);
  g_free (tmp);
  umask (mask);
  remove_dir (dir);
  g_free (out);
  g_free (dir);
}

static FILE *
open_dev_full (gboolean buffered)
{
  FILE *file = fopen ("/dev/full", "wb");
  if (file != NULL && !buffered)
    setvbuf (file, NULL, _IONBF, 0);
  return file;
}

/* Write errors carry the name given and the OS error. */
static void
test_write_errors (void)
{
  FILE *file = open_dev_full (TRUE);
  if (file == NULL) {
    g_test_skip ("no /dev/full");
    return;
  }
  GError *error = NULL;
  const char *enospc = g_strerror (ENOSPC);

  vdit_y4m_writer *w = vdit_y4m_writer_new (file, "clip.y4m", W, H, 8.0, &error);
  g_assert_no_error (error);
  g_assert_false (vdit_y4m_writer_write_rgb (w, rgb, 3 * W, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_assert_nonnull (strstr (error->message, "clip.y4m"));
  g_assert_nonnull (strstr (error->message, enospc));
  g_clear_error (&error);
  vdit_y4m_writer_free (w);
  fclose (file);

  file = open_dev_full (FALSE);
  g_assert_false (vdit_png_write_rgb (file, "frame-0000.png", rgb, W, H, 3 * W, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_assert_nonnull (strstr (error->message, "frame-0000.png"));
  g_assert_nonnull (strstr (error->message, enospc));
  g_clear_error (&error);
  fclose (file);

  /* Buffered bytes that fail only when flushed at the close. */
  file = open_dev_full (TRUE);
  g_assert_cmpint (fputs ("data", file), >=, 0);
  g_assert_false (vdit_output_file_close (file, "late.y4m", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_assert_nonnull (strstr (error->message, "late.y4m"));
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (size_t i = 0; i < sizeof rgb; i++)
    rgb[i] = (uint8_t) (i * 37);
  g_test_add_func ("/frame-sink/y4m-commit-partial", test_y4m_commit_partial);
  g_test_add_func ("/frame-sink/y4m-discard", test_y4m_discard);
  g_test_add_func ("/frame-sink/png-commit-partial", test_png_commit_partial);
  g_test_add_func ("/frame-sink/png-discard-created", test_png_discard_created);
  g_test_add_func ("/frame-sink/temporary-mode", test_temporary_mode);
  g_test_add_func ("/frame-sink/write-errors", test_write_errors);
  return g_test_run ();
}
