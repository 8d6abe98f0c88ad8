/* Writing an attention plan back into config.json. The file is re-serialised by a small
 * pretty-printer so that numbers keep a short form (json-glib's generator prints 0.2 as
 * 0.20000000000000001): objects one member per line, arrays of numbers on one line, the
 * layout of the committed configs, so a saved plan changes only its own line. */
#include "config.h"

#include <json-glib/json-glib.h>
#include <math.h>

static void write_node (GString *out, JsonNode *node, int indent);

static void
write_double (GString *out, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE], fmt[8];
  if (v == floor (v) && fabs (v) < 1e15) {
    g_string_append (out, g_ascii_formatd (buf, sizeof buf, "%.1f", v));
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    g_snprintf (fmt, sizeof fmt, "%%.%dg", prec);
    g_ascii_formatd (buf, sizeof buf, fmt, v);
    if (g_ascii_strtod (buf, NULL) == v)
      break;
  }
  g_string_append (out, buf);
}

static void
write_string (GString *out, const char *s)
{
  JsonNode *n = json_node_init_string (json_node_alloc (), s);
  char *text = json_to_string (n, FALSE);
  g_string_append (out, text);
  g_free (text);
  json_node_unref (n);
}

static void
write_newline (GString *out, int indent, gboolean oneline)
{
  if (oneline) {
    g_string_append_c (out, ' ');
    return;
  }
  g_string_append_c (out, '\n');
  for (int i = 0; i < indent; i++)
    g_string_append_c (out, ' ');
}

static void
write_object (GString *out, JsonObject *obj, int indent)
{
  GList *keys = json_object_get_members (obj);
  g_string_append_c (out, '{');
  for (GList *l = keys; l != NULL; l = l->next) {
    write_newline (out, indent + 2, FALSE);
    write_string (out, l->data);
    g_string_append (out, ": ");
    write_node (out, json_object_get_member (obj, l->data), indent + 2);
    if (l->next != NULL)
      g_string_append_c (out, ',');
  }
  if (keys != NULL)
    write_newline (out, indent, FALSE);
  g_string_append_c (out, '}');
  g_list_free (keys);
}

static void
write_array (GString *out, JsonArray *arr, int indent)
{
  guint n = json_array_get_length (arr);
  gboolean oneline = TRUE;
  for (guint i = 0; i < n; i++)
    oneline = oneline && JSON_NODE_HOLDS_VALUE (json_array_get_element (arr, i));
  g_string_append_c (out, '[');
  for (guint i = 0; i < n; i++) {
    if (i > 0 || !oneline)
      write_newline (out, indent + 2, oneline);
    write_node (out, json_array_get_element (arr, i), indent + 2);
    if (i + 1 < n)
      g_string_append_c (out, ',');
  }
  if (n > 0 && !oneline)
    write_newline (out, indent, FALSE);
  g_string_append_c (out, ']');
}

static void
write_node (GString *out, JsonNode *node, int indent)
{
  if (JSON_NODE_HOLDS_OBJECT (node))
    write_object (out, json_node_get_object (node), indent);
  else if (JSON_NODE_HOLDS_ARRAY (node))
    write_array (out, json_node_get_array (node), indent);
  else if (JSON_NODE_HOLDS_NULL (node))
    g_string_append (out, "null");
  else if (json_node_get_value_type (node) == G_TYPE_DOUBLE)
    write_double (out, json_node_get_double (node));
  else if (json_node_get_value_type (node) == G_TYPE_STRING)
    write_string (out, json_node_get_string (node));
  else if (json_node_get_value_type (node) == G_TYPE_BOOLEAN)
    g_string_append (out, json_node_get_boolean (node) ? "true" : "false");
  else
    g_string_append_printf (out, "%" G_GINT64_FORMAT, json_node_get_int (node));
}

/* Checks the plan against the file's config (depth, k ≥ 0) before touching it. */
static gboolean
check_plan (const char *path, const int *plan, int depth, GError **error)
{
  vdit_config *cfg = vdit_config_load (path, error);
  if (cfg == NULL)
    return FALSE;
  int want = cfg->dit.depth;
  vdit_config_free (cfg);
  if (depth != want) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_CONFIG,
                 "%s: attention plan has %d entries but dit.depth = %d", path, depth, want);
    return FALSE;
  }
  for (int i = 0; i < depth; i++) {
    if (plan[i] < 0) {
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_INVALID_ARGUMENT,
                   "%s: attention plan[%d] = %d must be at least 0", path, i, plan[i]);
      return FALSE;
    }
  }
  return TRUE;
}

static JsonObject *
load_root (const char *path, JsonParser *parser, GError **error)
{
  if (!json_parser_load_from_file (parser, path, error))
    return NULL;
  /* vdit_config_load has just accepted the file, so the root is an object */
  return json_node_get_object (json_parser_get_root (parser));
}

static void
set_plan (JsonObject *root, const int *plan, int depth)
{
  if (!json_object_has_member (root, "attention") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (root, "attention")))
    json_object_set_object_member (root, "attention", json_object_new ());
  JsonArray *arr = json_array_sized_new ((guint) depth);
  for (int i = 0; i < depth; i++)
    json_array_add_int_element (arr, plan[i]);
  json_object_set_array_member (json_object_get_object_member (root, "attention"), "plan", arr);
}

gboolean
vdit_config_save_plan (const char *path, const int *plan, int depth, GError **error)
{
  if (!check_plan (path, plan, depth, error))
    return FALSE;
  JsonParser *parser = json_parser_new ();
  JsonObject *root = load_root (path, parser, error);
  gboolean ok = FALSE;
  if (root != NULL) {
    set_plan (root, plan, depth);
    GString *out = g_string_new (NULL);
    write_object (out, root, 0);
    g_string_append_c (out, '\n');
    /* atomic: a crash never leaves a half-written config.json */
    ok = g_file_set_contents (path, out->str, (gssize) out->len, error);
    g_string_free (out, TRUE);
  }
  g_object_unref (parser);
  return ok;
}
