/* libFuzzer target: vdit_safetensors_open on arbitrary bytes. The first input byte picks
 * the form of the rest: odd, the file as it is; even, a header text, a NUL, then the data,
 * the 8-byte header length computed here (so that mutations of the JSON keep a
 * consistent length). The reader maps a regular file, so each input goes through a
 * temporary file; every tensor it accepts is looked up by name and its first and last
 * elements converted, so that a view pointing outside the mapping shows up under
 * AddressSanitizer. */
#include "safetensors.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *path;
static int fd = -1;

static void
remove_file (void)
{
  if (path != NULL)
    g_unlink (path);
}

static void
put (const void *data, size_t size, off_t at)
{
  const uint8_t *p = data;
  while (size > 0) {
    ssize_t n = pwrite (fd, p, size, at);
    if (n <= 0)
      abort ();
    p += n;
    size -= (size_t) n;
    at += n;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  if (path == NULL) {
    fd = g_file_open_tmp ("vdit-fuzz-XXXXXX.safetensors", &path, NULL);
    if (fd < 0)
      abort ();
    atexit (remove_file);
  }
  const uint8_t *rest = data + 1;
  size_t n = size - 1, total = n;
  if (data[0] & 1) {
    put (rest, n, 0);
  } else {
    const uint8_t *nul = memchr (rest, '\0', n);
    uint64_t hlen = nul ? (uint64_t) (nul - rest) : n;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
      prefix[i] = (uint8_t) (hlen >> (8 * i));
    put (prefix, 8, 0);
    put (rest, hlen, 8);
    if (nul != NULL)
      put (nul + 1, n - hlen - 1, 8 + (off_t) hlen);
    total = 8 + (nul ? n - 1 : n);
  }
  if (ftruncate (fd, (off_t) total) != 0)
    abort ();
  GError *error = NULL;
  vdit_safetensors *st = vdit_safetensors_open (path, &error);
  if (st == NULL) {
    if (error == NULL || error->message == NULL)
      abort (); /* a refusal must say why */
    g_error_free (error);
    return 0;
  }
  for (int i = 0; i < vdit_safetensors_count (st); i++) {
    const vdit_tensor_view *t = vdit_safetensors_get (st, i);
    if (vdit_safetensors_find (st, t->name) != t)
      abort ();
    if (t->n_elements > 0) {
      size_t es = vdit_dtype_size (t->dtype);
      float f[2];
      vdit_convert_to_f32 (&f[0], t->data, t->dtype, 1);
      vdit_convert_to_f32 (&f[1], (const uint8_t *) t->data + (size_t) (t->n_elements - 1) * es,
                           t->dtype, 1);
    }
  }
  (void) vdit_safetensors_metadata (st, "format");
  vdit_safetensors_close (st);
  return 0;
}
