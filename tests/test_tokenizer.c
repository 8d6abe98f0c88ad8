/* The SentencePiece shim: the tiny model's tokenizer loads and encodes; a missing or
 * garbage file gives an error naming it. Without models/tiny/tokenizer.model the
 * loading case skips and the program exits 77 (meson: skipped). */
#include "st_writer.h"
#include "tokenizer.h"
#include "vdit.h"

static char *tmpdir;
static char *model_path;

static void
test_encode (void)
{
  if (!g_file_test (model_path, G_FILE_TEST_EXISTS)) {
    g_test_skip ("models/tiny/tokenizer.model is not there");
    return;
  }
  GError *err = NULL;
  vdit_tokenizer *tok = vdit_tokenizer_load (model_path, &err);
  g_assert_no_error (err);
  int vocab = vdit_tokenizer_vocab_size (tok);
  g_assert_cmpint (vocab, >, 2);
  int32_t *ids = NULL;
  int n = -1;
  g_assert_true (vdit_tokenizer_encode (tok, "a red fox runs in the snow", &ids, &n, &err));
  g_assert_no_error (err);
  g_assert_cmpint (n, >, 0);
  for (int i = 0; i < n; i++) {
    g_assert_cmpint (ids[i], >=, 0);
    g_assert_cmpint (ids[i], <, vocab);
  }
  /* deterministic */
  int32_t *again = NULL;
  int m = 0;
  g_assert_true (vdit_tokenizer_encode (tok, "a red fox runs in the snow", &again, &m, NULL));
  g_assert_cmpmem (ids, n * sizeof *ids, again, m * sizeof *again);
  g_free (again);
  g_free (ids);
  /* the empty text is no ids, not an error (the caller rejects empty prompts) */
  g_assert_true (vdit_tokenizer_encode (tok, "", &ids, &n, &err));
  g_assert_cmpint (n, ==, 0);
  g_free (ids);
  g_assert_false (vdit_tokenizer_encode (tok, NULL, &ids, &n, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, model_path, NULL);
  g_error_free (err);
  vdit_tokenizer_free (tok);
}

static void
test_missing (void)
{
  char *path = g_build_filename (tmpdir, "absent.model", NULL);
  GError *err = NULL;
  g_assert_null (vdit_tokenizer_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_MISSING, path, "no such file", NULL);
  g_error_free (err);
  g_free (path);
}

static void
load_bad (const char *name, const char *bytes, gssize len)
{
  char *path = g_build_filename (tmpdir, name, NULL);
  g_assert_true (g_file_set_contents (path, bytes, len, NULL));
  GError *err = NULL;
  g_assert_null (vdit_tokenizer_load (path, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, path, "SentencePiece", NULL);
  g_error_free (err);
  g_free (path);
}

static void
test_garbage (void)
{
  load_bad ("garbage.model", "\xff\xfe this is not a protobuf \x01\x02\x03", 30);
}

static void
test_empty (void)
{
  load_bad ("empty.model", "", 0);
}

static void
test_directory (void)
{
  char *err_dir = g_build_filename (tmpdir, "dir.model", NULL);
  g_assert_cmpint (g_mkdir (err_dir, 0700), ==, 0);
  GError *err = NULL;
  g_assert_null (vdit_tokenizer_load (err_dir, &err));
  test_check_error (err, VDIT_ERROR, VDIT_ERROR_FORMAT, err_dir, NULL);
  g_error_free (err);
  g_rmdir (err_dir);
  g_free (err_dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  const char *root = g_getenv ("VDIT_SOURCE_ROOT");
  model_path = g_build_filename (root ? root : ".", "models", "tiny", "tokenizer.model", NULL);
  tmpdir = g_dir_make_tmp ("vdit-tok-XXXXXX", NULL);
  g_test_add_func ("/tokenizer/encode", test_encode);
  g_test_add_func ("/tokenizer/bad/missing-file", test_missing);
  g_test_add_func ("/tokenizer/bad/garbage", test_garbage);
  g_test_add_func ("/tokenizer/bad/empty", test_empty);
  g_test_add_func ("/tokenizer/bad/directory", test_directory);
  int rc = g_test_run ();
  test_rmdir (tmpdir);
  g_free (tmpdir);
  gboolean have_model = g_file_test (model_path, G_FILE_TEST_EXISTS);
  g_free (model_path);
  return rc == 0 && !have_model ? 77 : rc;
}
