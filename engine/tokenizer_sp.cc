// SentencePiece behind the C interface of tokenizer.h. No C++ exception crosses into C:
// every call catches and turns failures into a GError naming the file.
#include "tokenizer.h"

#include "vdit.h"

#include <sentencepiece_processor.h>

#include <memory>
#include <string>
#include <vector>

struct vdit_tokenizer {
  sentencepiece::SentencePieceProcessor sp;
  std::string path;
};

static void
set_status_error (GError **error, int code, const std::string &path, const char *what,
                  const std::string &detail)
{
  g_set_error (error, VDIT_ERROR, code, "%s: %s: %s", path.c_str (), what, detail.c_str ());
}

static vdit_tokenizer *
load (const char *path, GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "%s: no such file", path);
    return nullptr;
  }
  // freed on every way out, exceptions included, until handed to the caller
  auto tok = std::make_unique<vdit_tokenizer> ();
  tok->path = path;
  const auto status = tok->sp.Load (path);
  if (!status.ok ()) {
    set_status_error (error, VDIT_ERROR_FORMAT, tok->path, "not a SentencePiece model",
                      status.ToString ());
    return nullptr;
  }
  return tok.release ();
}

extern "C" vdit_tokenizer *
vdit_tokenizer_load (const char *path, GError **error)
{
  try {
    return load (path, error);
  } catch (const std::bad_alloc &) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
  } catch (const std::exception &e) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_FORMAT, "%s: cannot load the tokenizer: %s",
                 path, e.what ());
  } catch (...) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_FORMAT, "%s: cannot load the tokenizer", path);
  }
  return nullptr;
}

extern "C" void
vdit_tokenizer_free (vdit_tokenizer *tok)
{
  delete tok;
}

extern "C" int
vdit_tokenizer_vocab_size (const vdit_tokenizer *tok)
{
  try {
    return tok->sp.GetPieceSize ();
  } catch (...) {
    return 0;
  }
}

static gboolean
encode (const vdit_tokenizer *tok, const char *text, int32_t **ids, int *n_ids, GError **error)
{
  std::vector<int> pieces;
  const auto status = tok->sp.Encode (text, &pieces);
  if (!status.ok ()) {
    set_status_error (error, VDIT_ERROR_INVALID_ARGUMENT, tok->path, "cannot encode the text",
                      status.ToString ());
    return FALSE;
  }
  *ids = g_new (int32_t, pieces.size () + 1); // never NULL, even for no ids
  for (size_t i = 0; i < pieces.size (); i++)
    (*ids)[i] = pieces[i];
  *n_ids = (int) pieces.size ();
  return TRUE;
}

extern "C" gboolean
vdit_tokenizer_encode (const vdit_tokenizer *tok, const char *text, int32_t **ids, int *n_ids,
                       GError **error)
{
  *ids = nullptr;
  *n_ids = 0;
  if (text == nullptr) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "%s: no text to encode",
                 tok->path.c_str ());
    return FALSE;
  }
  try {
    return encode (tok, text, ids, n_ids, error);
  } catch (const std::exception &e) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "%s: cannot encode the text: %s",
                 tok->path.c_str (), e.what ());
  } catch (...) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT, "%s: cannot encode the text",
                 tok->path.c_str ());
  }
  g_clear_pointer (ids, g_free);
  *n_ids = 0;
  return FALSE;
}
