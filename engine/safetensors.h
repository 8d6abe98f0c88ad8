/* Memory-mapped safetensors files. */
#ifndef VDIT_SAFETENSORS_H
#define VDIT_SAFETENSORS_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  VDIT_DTYPE_F32,
  VDIT_DTYPE_F16,
  VDIT_DTYPE_BF16,
} VditDtype;

typedef struct {
  char *name;
  VditDtype dtype;
  int ndim;
  int64_t shape[8];
  int64_t n_elements;
  const void *data; /* points into the mapping */
  const char *file; /* owned by the file */
} vdit_tensor_view;

typedef struct vdit_safetensors vdit_safetensors;

/* Longest header accepted, in bytes: the format's own bound (safetensors'
 * MAX_HEADER_SIZE). */
#define VDIT_SAFETENSORS_MAX_HEADER 100000000

/* Maps the file (a regular file; a FIFO or a device is refused without blocking) and
 * validates the header: 8-byte length within the file and at most
 * VDIT_SAFETENSORS_MAX_HEADER, JSON object nested at most VDIT_JSON_MAX_DEPTH deep, each
 * name once, known dtypes, shapes matching byte ranges, offsets inside the data and not
 * overlapping. Errors name the file and the tensor. */
vdit_safetensors *vdit_safetensors_open (const char *path, GError **error);
void vdit_safetensors_close (vdit_safetensors *st);
int vdit_safetensors_count (const vdit_safetensors *st);
const vdit_tensor_view *vdit_safetensors_get (const vdit_safetensors *st, int i);
const vdit_tensor_view *vdit_safetensors_find (const vdit_safetensors *st, const char *name);
/* A string of the header's __metadata__ (non-string values are skipped), or NULL. */
const char *vdit_safetensors_metadata (const vdit_safetensors *st, const char *key);
/* The path the file was opened with (owned by st). */
const char *vdit_safetensors_path (const vdit_safetensors *st);

size_t vdit_dtype_size (VditDtype dtype);
const char *vdit_dtype_name (VditDtype dtype);
/* dst(n) f32 = convert(src(n) of dtype); src need not be aligned (little-endian data). */
void vdit_convert_to_f32 (float *dst, const void *src, VditDtype dtype, size_t n);
float vdit_bf16_to_f32 (uint16_t h);
float vdit_f16_to_f32 (uint16_t h);

G_END_DECLS

#endif
