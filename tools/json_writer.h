/* A small JSON writer for machine-readable output. Numbers are printed in their
 * shortest exact form (0.8, not 0.80000001192092896), which json-glib does not do. */
#ifndef VDIT_TOOLS_JSON_WRITER_H
#define VDIT_TOOLS_JSON_WRITER_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct {
  GString *text;
  gboolean need_comma;
} vdit_json;

void vdit_json_init (vdit_json *j);
/* key is the member name inside an object, NULL inside an array or at the top. */
void vdit_json_begin_object (vdit_json *j, const char *key);
void vdit_json_end_object (vdit_json *j);
void vdit_json_begin_array (vdit_json *j, const char *key);
void vdit_json_end_array (vdit_json *j);
void vdit_json_string (vdit_json *j, const char *key, const char *value);
void vdit_json_int (vdit_json *j, const char *key, int64_t value);
void vdit_json_double (vdit_json *j, const char *key, double value);
/* A float as the shortest decimal that reads back as the same float. */
void vdit_json_float (vdit_json *j, const char *key, float value);
void vdit_json_bool (vdit_json *j, const char *key, gboolean value);
/* Writes the text and a newline to stdout, flushes, and frees the writer's text. */
void vdit_json_print_line (vdit_json *j);

G_END_DECLS

#endif
