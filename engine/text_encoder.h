/* T5 / mT5 encoder forward (docs/model-format.md, "Text encoder"). */
#ifndef VDIT_TEXT_ENCODER_H
#define VDIT_TEXT_ENCODER_H

#include "backend.h"
#include "config.h"
#include "weights.h"

G_BEGIN_DECLS

typedef struct vdit_text_encoder vdit_text_encoder;

vdit_text_encoder *vdit_text_encoder_new (vdit_backend *be, const vdit_text_config *cfg,
                                          const vdit_weights *w, GError **error);
void vdit_text_encoder_free (vdit_text_encoder *te);
/* What vdit_text_encoder_new puts on the backend, in bytes (the embedding stays on the
 * host: its rows are looked up there). */
double vdit_text_encoder_weight_bytes (const vdit_text_config *cfg, size_t act_size);
/* out: an ACT buffer of (n, d_model) the caller allocated. ids must be < vocab_size. */
gboolean vdit_text_encoder_run (vdit_text_encoder *te, const int32_t *ids, int n, void *out,
                                GError **error);
/* T5's bidirectional relative-position bucket. */
int vdit_t5_bucket (int relative_position, int n_buckets, int max_distance);

G_END_DECLS

#endif
