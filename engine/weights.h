/* The weight table: every tensor the config implies, looked up by name, with its
 * shape checked, from the model's safetensors files (or seeded random values). */
#ifndef VDIT_WEIGHTS_H
#define VDIT_WEIGHTS_H

#include "config.h"
#include "safetensors.h"

G_BEGIN_DECLS

typedef struct vdit_weights vdit_weights;

/* Opens every *.safetensors in dir, checks that exactly the tensors the config
 * implies are present (no missing, no extra, no duplicates across files) with the
 * expected shapes. */
vdit_weights *vdit_weights_load (const char *dir, const vdit_config *cfg, GError **error);
/* The same table, values drawn from N(0, 0.02²) (norm weights 1, biases 0). */
vdit_weights *vdit_weights_new_random (const vdit_config *cfg, uint64_t seed, GError **error);
void vdit_weights_free (vdit_weights *w);

/* The tensor's shape and element count; NULL if the name is not in the table. */
const vdit_tensor_view *vdit_weights_get (const vdit_weights *w, const char *name);
/* Fills dst with the tensor as f32 (converting from its stored dtype). FALSE with an
 * error naming the tensor if it is not in the table. */
gboolean vdit_weights_read_f32 (const vdit_weights *w, const char *name, float *dst,
                                size_t n, GError **error);
int64_t vdit_weights_n_params (const vdit_weights *w);
/* A summary of the dtypes present, e.g. "bf16 (310), f32 (4)". Caller frees. */
char *vdit_weights_dtype_summary (const vdit_weights *w);

/* The expected tensor list for a config: names and shapes, in a stable order. */
typedef struct {
  char *name;
  int ndim;
  int64_t shape[5];
} vdit_tensor_spec;
GPtrArray *vdit_weights_expected (const vdit_config *cfg); /* of vdit_tensor_spec*, owns */

G_END_DECLS

#endif
