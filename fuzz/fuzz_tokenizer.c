/* libFuzzer target: vdit_tokenizer_load (a SentencePiece tokenizer.model, a protobuf)
 * on arbitrary bytes. The loader opens a path, so each input goes through a temporary
 * file. A model it accepts must encode a few prompts (ASCII, empty, multi-byte UTF-8,
 * invalid UTF-8) into ids inside its vocabulary; a refusal must say why. */
#include "tokenizer.h"

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
check_encode (const vdit_tokenizer *tok, const char *text)
{
  GError *error = NULL;
  int32_t *ids = NULL;
  int n = -1;
  const int vocab = vdit_tokenizer_vocab_size (tok);
  if (!vdit_tokenizer_encode (tok, text, &ids, &n, &error)) {
    if (error == NULL || error->message == NULL)
      abort ();
    g_error_free (error);
    return;
  }
  if (n < 0 || (n > 0 && ids == NULL))
    abort ();
  for (int i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= vocab)
      abort (); /* the text encoder would index its embedding with it */
  g_free (ids);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (path == NULL) {
    fd = g_file_open_tmp ("vdit-fuzz-XXXXXX.model", &path, NULL);
    if (fd < 0)
      abort ();
    atexit (remove_file);
  }
  if (ftruncate (fd, 0) != 0 || pwrite (fd, data, size, 0) != (ssize_t) size)
    abort ();
  GError *error = NULL;
  vdit_tokenizer *tok = vdit_tokenizer_load (path, &error);
  if (tok == NULL) {
    if (error == NULL || error->message == NULL)
      abort ();
    g_error_free (error);
    return 0;
  }
  check_encode (tok, "a red circle moving left");
  check_encode (tok, "");
  check_encode (tok, "\xe5\x86\x86 \xf0\x9f\x8e\xa5 caf\xc3\xa9");
  check_encode (tok, "\xff\xfe bad \xc3");
  vdit_tokenizer_free (tok);
  return 0;
}
