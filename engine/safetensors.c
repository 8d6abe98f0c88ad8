/* Memory-mapped safetensors: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
 * data. Every header entry is checked before anything points into the mapping. */
#include "safetensors.h"

#include "load_util.h"
#include "vdit.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

struct vdit_safetensors {
  char *path;
  GMappedFile *map;
  const guint8 *data; /* start of the tensor data (after the header) */
  guint64 data_size;
  vdit_tensor_view *tensors;
  int n_tensors;
  GHashTable *index;    /* name -> vdit_tensor_view* */
  GHashTable *metadata; /* string -> string, from __metadata__ */
};

/* Byte range of a tensor, for the overlap check. */
typedef struct {
  guint64 begin, end;
  const char *name;
} range;

static const char *const dtype_names[] = { "F32", "F16", "BF16" };

size_t
vdit_dtype_size (VditDtype dtype)
{
  return dtype == VDIT_DTYPE_F32 ? 4 : 2;
}

const char *
vdit_dtype_name (VditDtype dtype)
{
  return (unsigned) dtype < G_N_ELEMENTS (dtype_names) ? dtype_names[dtype] : "unknown";
}

static gboolean G_GNUC_PRINTF (3, 4)
fail (GError **error, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_FORMAT, "%s: %s", path, msg);
  g_free (msg);
  return FALSE;
}

/* A non-negative integer member of a JSON array. */
static gboolean
array_u64 (JsonArray *a, guint i, guint64 *out)
{
  JsonNode *n = json_array_get_element (a, i);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64 ||
      json_node_get_int (n) < 0)
    return FALSE;
  *out = (guint64) json_node_get_int (n);
  return TRUE;
}

static gboolean
parse_dtype (JsonObject *o, const char *path, const char *name, VditDtype *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, "dtype");
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return fail (error, path, "tensor '%s': dtype missing or not a string", name);
  const char *s = json_node_get_string (n);
  for (guint i = 0; i < G_N_ELEMENTS (dtype_names); i++) {
    if (g_str_equal (s, dtype_names[i])) {
      *out = (VditDtype) i;
      return TRUE;
    }
  }
  return fail (error, path, "tensor '%s': unknown dtype \"%s\" (supported: F32, F16, BF16)",
               name, s);
}

static gboolean
parse_shape (JsonObject *o, const char *path, vdit_tensor_view *t, GError **error)
{
  JsonNode *n = json_object_get_member (o, "shape");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    return fail (error, path, "tensor '%s': shape missing or not an array", t->name);
  JsonArray *a = json_node_get_array (n);
  guint ndim = json_array_get_length (a);
  if (ndim > G_N_ELEMENTS (t->shape))
    return fail (error, path, "tensor '%s': %u dimensions (at most %u supported)", t->name,
                 ndim, (guint) G_N_ELEMENTS (t->shape));
  t->ndim = (int) ndim;
  t->n_elements = 1;
  for (guint i = 0; i < ndim; i++) {
    guint64 d;
    if (!array_u64 (a, i, &d))
      return fail (error, path, "tensor '%s': shape[%u] is not a non-negative integer",
                   t->name, i);
    if (d != 0 && (guint64) t->n_elements > (guint64) G_MAXINT64 / 8 / d)
      return fail (error, path, "tensor '%s': shape is too large", t->name);
    t->shape[i] = (int64_t) d;
    t->n_elements *= (int64_t) d;
  }
  return TRUE;
}

static gboolean
parse_offsets (JsonObject *o, const vdit_safetensors *st, vdit_tensor_view *t, range *r,
               GError **error)
{
  JsonNode *n = json_object_get_member (o, "data_offsets");
  JsonArray *a = n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  if (a == NULL || json_array_get_length (a) != 2 || !array_u64 (a, 0, &r->begin) ||
      !array_u64 (a, 1, &r->end) || r->end < r->begin)
    return fail (error, st->path, "tensor '%s': data_offsets must be [begin, end] with "
                 "0 <= begin <= end", t->name);
  if (r->end > st->data_size)
    return fail (error, st->path, "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %"
                 G_GUINT64_FORMAT "] past the end of the data (%" G_GUINT64_FORMAT " bytes)",
                 t->name, r->begin, r->end, st->data_size);
  guint64 want = (guint64) t->n_elements * vdit_dtype_size (t->dtype);
  if (r->end - r->begin != want)
    return fail (error, st->path, "tensor '%s': data_offsets span %" G_GUINT64_FORMAT
                 " bytes but shape and dtype %s need %" G_GUINT64_FORMAT, t->name,
                 r->end - r->begin, vdit_dtype_name (t->dtype), want);
  r->name = t->name;
  t->data = st->data + r->begin;
  t->file = st->path;
  return TRUE;
}

static gboolean
parse_tensor (vdit_safetensors *st, const char *name, JsonNode *node, range *r,
              GError **error)
{
  vdit_tensor_view *t = &st->tensors[st->n_tensors];
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return fail (error, st->path, "tensor '%s': header entry is not an object", name);
  JsonObject *o = json_node_get_object (node);
  t->name = g_strdup (name);
  st->n_tensors++; /* counted now so that close() frees the name */
  return parse_dtype (o, st->path, name, &t->dtype, error) &&
         parse_shape (o, st->path, t, error) &&
         parse_offsets (o, st, t, r, error);
}

static void
read_metadata (vdit_safetensors *st, JsonNode *node)
{
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return;
  JsonObject *o = json_node_get_object (node);
  GList *keys = json_object_get_members (o);
  for (GList *l = keys; l != NULL; l = l->next) {
    JsonNode *v = json_object_get_member (o, l->data);
    if (JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_STRING)
      g_hash_table_insert (st->metadata, g_strdup (l->data), g_strdup (json_node_get_string (v)));
  }
  g_list_free (keys);
}

static int
range_cmp (const void *a, const void *b)
{
  const range *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* Tensors may not share bytes (empty tensors share nothing). */
static gboolean
check_overlap (const vdit_safetensors *st, range *r, int n, GError **error)
{
  qsort (r, (size_t) n, sizeof *r, range_cmp);
  const range *prev = NULL;
  for (int i = 0; i < n; i++) {
    if (r[i].begin == r[i].end)
      continue;
    if (prev != NULL && r[i].begin < prev->end)
      return fail (error, st->path, "tensors '%s' and '%s' overlap (bytes %" G_GUINT64_FORMAT
                   "..%" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")",
                   prev->name, r[i].name, prev->begin, prev->end, r[i].begin, r[i].end);
    prev = &r[i];
  }
  return TRUE;
}

static gboolean
parse_entries (vdit_safetensors *st, JsonObject *root, GError **error)
{
  GList *keys = json_object_get_members (root);
  range *ranges = g_new0 (range, g_list_length (keys) + 1);
  st->tensors = g_new0 (vdit_tensor_view, g_list_length (keys) + 1);
  gboolean ok = TRUE;
  int n = 0;
  for (GList *l = keys; ok && l != NULL; l = l->next) {
    JsonNode *node = json_object_get_member (root, l->data);
    if (g_str_equal (l->data, "__metadata__")) {
      read_metadata (st, node);
      continue;
    }
    ok = parse_tensor (st, l->data, node, &ranges[n], error);
    if (ok)
      g_hash_table_insert (st->index, st->tensors[n].name, &st->tensors[n]);
    n++;
  }
  ok = ok && check_overlap (st, ranges, n, error);
  g_free (ranges);
  g_list_free (keys);
  return ok;
}

static gboolean
parse_header (vdit_safetensors *st, const guint8 *bytes, gsize size, GError **error)
{
  guint64 hlen = 0;
  if (size < 8)
    return fail (error, st->path, "file is %" G_GSIZE_FORMAT " bytes, too short for the "
                 "8-byte header length", size);
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | bytes[i];
  if (hlen > size - 8)
    return fail (error, st->path, "header length %" G_GUINT64_FORMAT " past the end of the "
                 "file (%" G_GSIZE_FORMAT " bytes)", hlen, size);
  if (hlen > VDIT_SAFETENSORS_MAX_HEADER)
    return fail (error, st->path, "header length %" G_GUINT64_FORMAT " is over the format's "
                 "limit of %d bytes", hlen, VDIT_SAFETENSORS_MAX_HEADER);
  st->data = bytes + 8 + hlen;
  st->data_size = size - 8 - hlen;
  JsonParser *parser = vdit_json_parse ((const char *) bytes + 8, (gsize) hlen, st->path,
                                        "header", error);
  if (parser == NULL)
    return FALSE;
  gboolean ok = parse_entries (st, json_node_get_object (json_parser_get_root (parser)), error);
  g_object_unref (parser);
  return ok;
}

vdit_safetensors *
vdit_safetensors_open (const char *path, GError **error)
{
  GMappedFile *map = vdit_map_regular (path, error);
  if (map == NULL)
    return NULL;
  vdit_safetensors *st = g_new0 (vdit_safetensors, 1);
  st->path = g_strdup (path);
  st->map = map;
  st->index = g_hash_table_new (g_str_hash, g_str_equal);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  const guint8 *bytes = (const guint8 *) g_mapped_file_get_contents (map);
  if (!parse_header (st, bytes, g_mapped_file_get_length (map), error)) {
    vdit_safetensors_close (st);
    return NULL;
  }
  return st;
}

void
vdit_safetensors_close (vdit_safetensors *st)
{
  if (st == NULL)
    return;
  for (int i = 0; i < st->n_tensors; i++)
    g_free (st->tensors[i].name);
  g_free (st->tensors);
  g_hash_table_unref (st->index);
  g_hash_table_unref (st->metadata);
  g_mapped_file_unref (st->map);
  g_free (st->path);
  g_free (st);
}

int
vdit_safetensors_count (const vdit_safetensors *st)
{
  return st->n_tensors;
}

const vdit_tensor_view *
vdit_safetensors_get (const vdit_safetensors *st, int i)
{
  return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const vdit_tensor_view *
vdit_safetensors_find (const vdit_safetensors *st, const char *name)
{
  return g_hash_table_lookup (st->index, name);
}

const char *
vdit_safetensors_metadata (const vdit_safetensors *st, const char *key)
{
  return g_hash_table_lookup (st->metadata, key);
}

const char *
vdit_safetensors_path (const vdit_safetensors *st)
{
  return st->path;
}

/* --- conversions. Loads go through memcpy: tensor data need not be aligned. */

float
vdit_bf16_to_f32 (uint16_t h)
{
  uint32_t bits = (uint32_t) h << 16; /* bf16 is the top half of an f32 */
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

float
vdit_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13); /* inf, nan (payload kept) */
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
  } else if (man == 0) {
    bits = sign; /* ±0 */
  } else {
    /* subnormal: man · 2^-24, exact in f32 */
    float f = ldexpf ((float) man, -24);
    return sign ? -f : f;
  }
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

void
vdit_convert_to_f32 (float *dst, const void *src, VditDtype dtype, size_t n)
{
  const guint8 *s = src;
  if (dtype == VDIT_DTYPE_F32) {
    memcpy (dst, src, n * sizeof (float));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy (&h, s + 2 * i, 2);
    h = GUINT16_FROM_LE (h);
    dst[i] = dtype == VDIT_DTYPE_BF16 ? vdit_bf16_to_f32 (h) : vdit_f16_to_f32 (h);
  }
}
