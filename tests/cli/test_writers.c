/* The y4m and PNG writers refuse what they cannot write (sides, frame rates, short
 * rows) with an error instead of overflowing: inputs fuzz_writers feeds them. */
#include "png_writer.h"
#include "y4m_writer.h"

#include <math.h>
#include <string.h>

#include <gio/gio.h>

static void
expect_y4m_refused (int width, int height, double fps)
{
  GError *error = NULL;
  FILE *f = tmpfile ();
  g_assert_nonnull (f);
  g_assert_null (vdit_y4m_writer_new (f, "out.y4m", width, height, fps, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "out.y4m"));
  g_assert_cmpint (ftell (f), ==, 0); /* nothing written */
  g_error_free (error);
  fclose (f);
}

static void
test_y4m_bad_stream (void)
{
  expect_y4m_refused (0, 4, 8.0);
  expect_y4m_refused (4, -1, 8.0);
  expect_y4m_refused (VDIT_Y4M_MAX_SIDE + 1, 4, 8.0);
  expect_y4m_refused (4, 4, NAN);
  expect_y4m_refused (4, 4, INFINITY);
  expect_y4m_refused (4, 4, -8.0);
  expect_y4m_refused (4, 4, 0.0);
  expect_y4m_refused (4, 4, 1e-9);  /* rounds to F0:1000 */
  expect_y4m_refused (4, 4, 3e9);   /* more than an int of frames */
}

static void
test_y4m_fps_bounds (void)
{
  static const double ok[] = { VDIT_Y4M_MIN_FPS, 0.1, 29.97, VDIT_Y4M_MAX_FPS };
  for (guint i = 0; i < G_N_ELEMENTS (ok); i++) {
    GError *error = NULL;
    char header[128] = "";
    int num = 0, den = 0;
    FILE *f = tmpfile ();
    vdit_y4m_writer *w = vdit_y4m_writer_new (f, "out.y4m", 2, 2, ok[i], &error);
    g_assert_no_error (error);
    vdit_y4m_writer_free (w);
    rewind (f);
    g_assert_nonnull (fgets (header, sizeof header, f));
    g_assert_cmpint (sscanf (header, "YUV4MPEG2 W2 H2 F%d:%d", &num, &den), ==, 2);
    g_assert_cmpint (num, >, 0);
    g_assert_cmpint (den, >, 0);
    g_assert_cmpfloat_with_epsilon ((double) num / den, ok[i], ok[i] * 1e-3);
    fclose (f);
  }
}

static void
test_short_rows (void)
{
  GError *error = NULL;
  const uint8_t rgb[4 * 4 * 3] = { 0 };
  FILE *f = tmpfile ();
  vdit_y4m_writer *w = vdit_y4m_writer_new (f, "out.y4m", 4, 4, 8.0, &error);
  g_assert_no_error (error);
  g_assert_false (vdit_y4m_writer_write_rgb (w, rgb, 11, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (vdit_y4m_writer_write_rgb (w, rgb, 12, &error));
  vdit_y4m_writer_free (w);

  g_assert_false (vdit_png_write_rgb (f, "out.png", rgb, 4, 4, 11, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (vdit_png_write_rgb (f, "out.png", rgb, 0, 4, 12, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  fclose (f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/writers/y4m-bad-stream", test_y4m_bad_stream);
  g_test_add_func ("/writers/y4m-fps-bounds", test_y4m_fps_bounds);
  g_test_add_func ("/writers/short-rows", test_short_rows);
  return g_test_run ();
}
