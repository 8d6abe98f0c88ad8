/* Writing small safetensors files (and deliberately broken ones) for the loader tests. */
#ifndef VDIT_TEST_ST_WRITER_H
#define VDIT_TEST_ST_WRITER_H

#include <glib.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  GString *header; /* JSON members, without the braces */
  GByteArray *data;
} st_writer;

static inline st_writer *
st_writer_new (void)
{
  st_writer *w = g_new0 (st_writer, 1);
  w->header = g_string_new (NULL);
  w->data = g_byte_array_new ();
  return w;
}

static inline void
st_writer_free (st_writer *w)
{
  g_string_free (w->header, TRUE);
  g_byte_array_unref (w->data);
  g_free (w);
}

/* Adds a raw header member: "name": json. */
static inline void
st_writer_add_raw (st_writer *w, const char *name, const char *json)
{
  g_string_append_printf (w->header, "%s\"%s\": %s", w->header->len ? ", " : "", name, json);
}

/* Adds a tensor whose data_offsets cover `bytes` (appended to the data). */
static inline void
st_writer_add (st_writer *w, const char *name, const char *dtype, int ndim,
               const int64_t *shape, const void *bytes, size_t n_bytes)
{
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "{\"dtype\": \"%s\", \"shape\": [", dtype);
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_printf (s, "], \"data_offsets\": [%u, %u]}", w->data->len,
                          (guint) (w->data->len + n_bytes));
  if (n_bytes > 0)
    g_byte_array_append (w->data, bytes, (guint) n_bytes);
  st_writer_add_raw (w, name, s->str);
  g_string_free (s, TRUE);
}

/* An f32 tensor with values start, start + 1, … */
static inline void
st_writer_add_f32 (st_writer *w, const char *name, int ndim, const int64_t *shape, float start)
{
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  float *v = g_new (float, n > 0 ? n : 1);
  for (int64_t i = 0; i < n; i++)
    v[i] = start + (float) i;
  st_writer_add (w, name, "F32", ndim, shape, v, (size_t) n * sizeof (float));
  g_free (v);
}

/* Writes 8-byte header length (hlen_override ≥ 0 replaces the true one), the header
 * (with `pad` spaces), then the data. */
static inline void
st_writer_save_full (const st_writer *w, const char *path, int64_t hlen_override, int pad)
{
  GString *h = g_string_new ("{");
  g_string_append_len (h, w->header->str, (gssize) w->header->len);
  g_string_append_c (h, '}');
  for (int i = 0; i < pad; i++)
    g_string_append_c (h, ' ');
  uint64_t hlen = hlen_override >= 0 ? (uint64_t) hlen_override : h->len;
  GByteArray *out = g_byte_array_new ();
  for (int i = 0; i < 8; i++) {
    guint8 b = (guint8) (hlen >> (8 * i));
    g_byte_array_append (out, &b, 1);
  }
  g_byte_array_append (out, (const guint8 *) h->str, (guint) h->len);
  g_byte_array_append (out, w->data->data, w->data->len);
  g_assert_true (g_file_set_contents (path, (const char *) out->data, out->len, NULL));
  g_byte_array_unref (out);
  g_string_free (h, TRUE);
}

static inline void
st_writer_save (const st_writer *w, const char *path)
{
  st_writer_save_full (w, path, -1, 0);
}

/* Removes a flat temporary directory and the files in it. */
static inline void
test_rmdir (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)) != NULL) {
    char *p = g_build_filename (dir, name, NULL);
    g_remove (p);
    g_free (p);
  }
  if (d)
    g_dir_close (d);
  g_rmdir (dir);
}

/* The error is domain/code and its message contains every needle (NULL-terminated). */
static inline void
test_check_error (const GError *err, GQuark domain, int code, ...)
{
  g_assert_nonnull (err);
  if (g_test_verbose ())
    g_test_message ("error: %s", err->message);
  g_assert_error ((GError *) err, domain, code);
  va_list ap;
  va_start (ap, code);
  const char *needle;
  while ((needle = va_arg (ap, const char *)) != NULL) {
    if (strstr (err->message, needle) == NULL)
      g_error ("message \"%s\" does not contain \"%s\"", err->message, needle);
  }
  va_end (ap);
}

#endif
