/* The safetensors reader: every malformed file is its own case with a clear error; a
 * good file round-trips F32, F16 and BF16 values. */
#include "test_trap.h"
#include "safetensors.h"
#include "st_writer.h"
#include "vdit.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* Opens `path`, expecting a failure of `code` whose message names the file and needles. */
#define EXPECT_FAIL(path, code, ...)                                        \
  do {                                                                      \
    GError *err_ = NULL;                                                    \
    vdit_safetensors *st_ = vdit_safetensors_open ((path), &err_);          \
    g_assert_null (st_);                                                    \
    test_check_error (err_, VDIT_ERROR, (code), (path), __VA_ARGS__, NULL); \
    g_error_free (err_);                                                    \
  } while (0)

static void
test_missing_file (void)
{
  char *path = tmp_path ("absent.safetensors");
  EXPECT_FAIL (path, VDIT_ERROR_MISSING, "no such file");
  g_free (path);
}

static void
test_truncated (void)
{
  char *path = tmp_path ("truncated.safetensors");
  g_assert_true (g_file_set_contents (path, "\x10\0\0\0\0", 5, NULL));
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "5 bytes", "too short");
  g_free (path);
}

static void
test_empty_file (void)
{
  char *path = tmp_path ("empty.safetensors");
  g_assert_true (g_file_set_contents (path, "", 0, NULL));
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "0 bytes");
  g_free (path);
}

static void
test_header_past_end (void)
{
  char *path = tmp_path ("hlen.safetensors");
  st_writer *w = st_writer_new ();
  st_writer_save_full (w, path, 1000, 0);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "header length 1000", "past the end");
  st_writer_free (w);
  g_free (path);
}

static void
test_header_not_json (void)
{
  char *path = tmp_path ("notjson.safetensors");
  g_assert_true (g_file_set_contents (path, "\x09\0\0\0\0\0\0\0{not json", 17, NULL));
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "not valid JSON");
  g_free (path);
}

static void
test_header_not_object (void)
{
  char *path = tmp_path ("array.safetensors");
  g_assert_true (g_file_set_contents (path, "\x05\0\0\0\0\0\0\0[1,2]", 13, NULL));
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "not a JSON object");
  g_free (path);
}

static void
test_unknown_dtype (void)
{
  char *path = tmp_path ("dtype.safetensors");
  st_writer *w = st_writer_new ();
  int64_t shape[] = { 2 };
  int64_t v[2] = { 1, 2 };
  st_writer_add (w, "counts", "I64", 1, shape, v, sizeof v);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "'counts'", "unknown dtype", "I64");
  st_writer_free (w);
  g_free (path);
}

static void
test_offsets_past_end (void)
{
  char *path = tmp_path ("offsets.safetensors");
  st_writer *w = st_writer_new ();
  st_writer_add_raw (w, "w", "{\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}");
  float v[2] = { 1, 2 }; /* only 8 bytes of data */
  g_byte_array_append (w->data, (const guint8 *) v, sizeof v);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "'w'", "past the end", "8 bytes");
  st_writer_free (w);
  g_free (path);
}

static void
test_shape_mismatch (void)
{
  char *path = tmp_path ("shape.safetensors");
  st_writer *w = st_writer_new ();
  int64_t shape[] = { 3, 2 };
  float v[4] = { 0 }; /* 16 bytes for a [3, 2] F32 tensor that needs 24 */
  st_writer_add (w, "proj.weight", "F32", 2, shape, v, sizeof v);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "'proj.weight'", "16 bytes", "need 24");
  st_writer_free (w);
  g_free (path);
}

static void
test_overlap (void)
{
  char *path = tmp_path ("overlap.safetensors");
  st_writer *w = st_writer_new ();
  st_writer_add_raw (w, "a", "{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}");
  st_writer_add_raw (w, "b", "{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}");
  float v[3] = { 0 };
  g_byte_array_append (w->data, (const guint8 *) v, sizeof v);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "'a'", "'b'", "overlap");
  st_writer_free (w);
  g_free (path);
}

static void
test_duplicate_name (void)
{
  char *path = tmp_path ("dup.safetensors");
  st_writer *w = st_writer_new ();
  int64_t shape[] = { 1 };
  float v = 1;
  st_writer_add (w, "twice", "F32", 1, shape, &v, sizeof v);
  st_writer_add (w, "twice", "F32", 1, shape, &v, sizeof v);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "'twice'");
  st_writer_free (w);
  g_free (path);
}

static void
test_bad_offsets_order (void)
{
  char *path = tmp_path ("order.safetensors");
  st_writer *w = st_writer_new ();
  st_writer_add_raw (w, "r", "{\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}");
  float v[1] = { 0 };
  g_byte_array_append (w->data, (const guint8 *) v, sizeof v);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "'r'", "data_offsets");
  st_writer_free (w);
  g_free (path);
}

/* 200,000 nested arrays (400 KB) overflowed the stack of json-glib's recursive parser. */
static void
test_deep_nesting (void)
{
  if (!run_in_subprocess ())
    return;
  char *path = tmp_path ("deep.safetensors");
  const int depth = 200000;
  char *deep = g_malloc (2 * depth + 1);
  memset (deep, '[', depth);
  memset (deep + depth, ']', depth);
  deep[2 * depth] = '\0';
  st_writer *w = st_writer_new ();
  st_writer_add_raw (w, "__metadata__", deep);
  st_writer_save (w, path);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "header", "nested deeper than 64 levels");
  st_writer_free (w);
  g_free (deep);
  g_free (path);
}

/* A FIFO blocked open() until a writer came; now it is refused. */
static void
test_fifo (void)
{
  if (!run_in_subprocess ())
    return;
  char *path = tmp_path ("fifo.safetensors");
  g_assert_cmpint (mkfifo (path, 0600), ==, 0);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "not a regular file");
  g_remove (path);
  g_free (path);
}

static void
test_directory (void)
{
  char *path = tmp_path ("dir.safetensors");
  g_assert_cmpint (g_mkdir (path, 0700), ==, 0);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "not a regular file");
  g_rmdir (path);
  g_free (path);
}

/* A header length inside the file but beyond the format's 100 MB bound is refused before
 * the header is parsed (a sparse file: no disk used). */
static void
test_header_too_large (void)
{
  char *path = tmp_path ("bighead.safetensors");
  const guint64 hlen = 100000001;
  guint8 len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (guint8) (hlen >> (8 * i));
  int fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, len, 8), ==, 8);
  g_assert_cmpint (ftruncate (fd, (off_t) (8 + hlen + 16)), ==, 0);
  close (fd);
  EXPECT_FAIL (path, VDIT_ERROR_FORMAT, "header length 100000001", "100000000");
  g_remove (path);
  g_free (path);
}

/* 1, −2, max, smallest and largest subnormal, −0, inf, −inf, nan */
static const uint16_t f16_bits[] = { 0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff,
                                     0x8000, 0x7c00, 0xfc00, 0x7e00 };
/* 1, −2, subnormal, −0, inf, −inf, nan, 3.140625 */
static const uint16_t bf16_bits[] = { 0x3f80, 0xc000, 0x0001, 0x8000,
                                      0x7f80, 0xff80, 0x7fc0, 0x4049 };

/* A good file: header padded with spaces, data deliberately not 4-byte aligned. */
static char *
write_good (void)
{
  char *path = tmp_path ("good.safetensors");
  st_writer *w = st_writer_new ();
  st_writer_add_raw (w, "__metadata__", "{\"format\": \"pt\", \"step\": 3}");
  int64_t s32[] = { 2, 3 }, s16[] = { G_N_ELEMENTS (f16_bits) };
  int64_t sb16[] = { G_N_ELEMENTS (bf16_bits) };
  float v32[6] = { 0.5f, -1.25f, 3e-40f, INFINITY, -0.0f, 1e30f };
  int64_t s0[] = { 0, 4 };
  st_writer_add (w, "half", "F16", 1, s16, f16_bits, sizeof f16_bits);
  st_writer_add (w, "full", "F32", 2, s32, v32, sizeof v32);
  st_writer_add (w, "brain", "BF16", 1, sb16, bf16_bits, sizeof bf16_bits);
  st_writer_add (w, "empty", "F32", 2, s0, NULL, 0);
  st_writer_save_full (w, path, -1, 1);
  st_writer_free (w);
  return path;
}

static void
test_good_file (void)
{
  char *path = write_good ();
  GError *err = NULL;
  vdit_safetensors *st = vdit_safetensors_open (path, &err);
  g_assert_no_error (err);
  g_assert_cmpint (vdit_safetensors_count (st), ==, 4);
  g_assert_cmpstr (vdit_safetensors_metadata (st, "format"), ==, "pt");
  g_assert_null (vdit_safetensors_metadata (st, "step")); /* not a string */
  g_assert_null (vdit_safetensors_find (st, "__metadata__"));
  g_assert_null (vdit_safetensors_find (st, "nothing"));

  const vdit_tensor_view *t = vdit_safetensors_find (st, "full");
  g_assert_nonnull (t);
  g_assert_cmpint (t->dtype, ==, VDIT_DTYPE_F32);
  g_assert_cmpint (t->ndim, ==, 2);
  g_assert_cmpint (t->shape[0], ==, 2);
  g_assert_cmpint (t->shape[1], ==, 3);
  g_assert_cmpint (t->n_elements, ==, 6);
  g_assert_cmpstr (t->file, ==, path);
  float out[9];
  vdit_convert_to_f32 (out, t->data, t->dtype, 6);
  g_assert_cmpfloat (out[0], ==, 0.5f);
  g_assert_cmpfloat (out[1], ==, -1.25f);
  g_assert_cmpfloat (out[2], ==, 3e-40f);
  g_assert_true (isinf (out[3]) && out[3] > 0);
  g_assert_true (out[4] == 0 && signbit (out[4]));
  g_assert_cmpfloat (out[5], ==, 1e30f);

  t = vdit_safetensors_find (st, "empty");
  g_assert_cmpint (t->n_elements, ==, 0);
  vdit_safetensors_close (st);
  g_free (path);
}

static void
test_f16_values (void)
{
  char *path = write_good ();
  vdit_safetensors *st = vdit_safetensors_open (path, NULL);
  g_assert_nonnull (st);
  const vdit_tensor_view *t = vdit_safetensors_find (st, "half");
  g_assert_cmpint (t->dtype, ==, VDIT_DTYPE_F16);
  float out[G_N_ELEMENTS (f16_bits)];
  vdit_convert_to_f32 (out, t->data, t->dtype, t->n_elements);
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, -2.0f);
  g_assert_cmpfloat (out[2], ==, 65504.0f);
  g_assert_cmpfloat (out[3], ==, ldexpf (1.0f, -24)); /* smallest subnormal */
  g_assert_cmpfloat (out[4], ==, ldexpf (1023.0f, -24)); /* largest subnormal */
  g_assert_true (out[5] == 0 && signbit (out[5]));
  g_assert_true (isinf (out[6]) && out[6] > 0);
  g_assert_true (isinf (out[7]) && out[7] < 0);
  g_assert_true (isnan (out[8]));
  vdit_safetensors_close (st);
  g_free (path);
}

static void
test_bf16_values (void)
{
  char *path = write_good ();
  vdit_safetensors *st = vdit_safetensors_open (path, NULL);
  g_assert_nonnull (st);
  const vdit_tensor_view *t = vdit_safetensors_find (st, "brain");
  g_assert_cmpint (t->dtype, ==, VDIT_DTYPE_BF16);
  float out[G_N_ELEMENTS (bf16_bits)];
  vdit_convert_to_f32 (out, t->data, t->dtype, t->n_elements);
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, -2.0f);
  g_assert_cmpfloat (out[2], ==, ldexpf (1.0f, -133)); /* subnormal */
  g_assert_true (out[3] == 0 && signbit (out[3]));
  g_assert_true (isinf (out[4]) && out[4] > 0);
  g_assert_true (isinf (out[5]) && out[5] < 0);
  g_assert_true (isnan (out[6]));
  g_assert_cmpfloat (out[7], ==, 3.140625f);
  vdit_safetensors_close (st);
  g_free (path);
}

static void
test_dtype_names (void)
{
  g_assert_cmpstr (vdit_dtype_name (VDIT_DTYPE_F32), ==, "F32");
  g_assert_cmpstr (vdit_dtype_name (VDIT_DTYPE_F16), ==, "F16");
  g_assert_cmpstr (vdit_dtype_name (VDIT_DTYPE_BF16), ==, "BF16");
  g_assert_cmpuint (vdit_dtype_size (VDIT_DTYPE_F32), ==, 4);
  g_assert_cmpuint (vdit_dtype_size (VDIT_DTYPE_F16), ==, 2);
  g_assert_cmpuint (vdit_dtype_size (VDIT_DTYPE_BF16), ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("vdit-st-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);
  g_test_add_func ("/safetensors/bad/missing-file", test_missing_file);
  g_test_add_func ("/safetensors/bad/truncated", test_truncated);
  g_test_add_func ("/safetensors/bad/empty", test_empty_file);
  g_test_add_func ("/safetensors/bad/header-length-past-end", test_header_past_end);
  g_test_add_func ("/safetensors/bad/header-not-json", test_header_not_json);
  g_test_add_func ("/safetensors/bad/header-not-object", test_header_not_object);
  g_test_add_func ("/safetensors/bad/unknown-dtype", test_unknown_dtype);
  g_test_add_func ("/safetensors/bad/offsets-past-end", test_offsets_past_end);
  g_test_add_func ("/safetensors/bad/shape-mismatch", test_shape_mismatch);
  g_test_add_func ("/safetensors/bad/overlap", test_overlap);
  g_test_add_func ("/safetensors/bad/duplicate-name", test_duplicate_name);
  g_test_add_func ("/safetensors/bad/offsets-reversed", test_bad_offsets_order);
  g_test_add_func ("/safetensors/bad/deep-nesting", test_deep_nesting);
  g_test_add_func ("/safetensors/bad/fifo", test_fifo);
  g_test_add_func ("/safetensors/bad/directory", test_directory);
  g_test_add_func ("/safetensors/bad/header-too-large", test_header_too_large);
  g_test_add_func ("/safetensors/good/file", test_good_file);
  g_test_add_func ("/safetensors/good/f16", test_f16_values);
  g_test_add_func ("/safetensors/good/bf16", test_bf16_values);
  g_test_add_func ("/safetensors/dtype-names", test_dtype_names);
  int rc = g_test_run ();
  test_rmdir (tmpdir);
  g_free (tmpdir);
  return rc;
}
