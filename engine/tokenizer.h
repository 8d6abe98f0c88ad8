/* SentencePiece tokenizer behind a C interface (the C++ stays in tokenizer_sp.cc). */
#ifndef VDIT_TOKENIZER_H
#define VDIT_TOKENIZER_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct vdit_tokenizer vdit_tokenizer;

vdit_tokenizer *vdit_tokenizer_load (const char *path, GError **error);
void vdit_tokenizer_free (vdit_tokenizer *tok);
int vdit_tokenizer_vocab_size (const vdit_tokenizer *tok);
/* ids of text (no BOS/EOS added); caller frees *ids with g_free. */
gboolean vdit_tokenizer_encode (const vdit_tokenizer *tok, const char *text, int32_t **ids,
                                int *n_ids, GError **error);

G_END_DECLS

#endif
