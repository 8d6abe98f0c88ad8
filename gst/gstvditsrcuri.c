/* vditsrc as a GstURIHandler for vdit:// URIs.
 *
 * This library is free software; you can redistribute it and/or modify it under
 * the terms of the GNU Lesser General Public License as published by the Free
 * Software Foundation; either version 2.1 of the License, or (at your option) any
 * later version.
 */
#include "gstvditsrcuri.h"
#include "gstvditsrc.h"

#include <string.h>

/* The element's own writable properties: what a URI may set. */
static GParamSpec **
gst_vdit_src_uri_properties (GObject * object, guint * n)
{
  GParamSpec **all = g_object_class_list_properties (G_OBJECT_GET_CLASS
      (object), n);
  guint kept = 0;

  for (guint i = 0; i < *n; i++) {
    if (all[i]->owner_type == GST_TYPE_VDIT_SRC &&
        (all[i]->flags & G_PARAM_WRITABLE))
      all[kept++] = all[i];
  }
  *n = kept;
  return all;
}

static gchar *
gst_vdit_src_uri_value_string (const GValue * value)
{
  if (G_VALUE_HOLDS_STRING (value))
    return g_value_dup_string (value);
  if (G_VALUE_HOLDS_ENUM (value)) {
    GEnumValue *e = g_enum_get_value (g_type_class_peek (G_VALUE_TYPE (value)),
        g_value_get_enum (value));

    return g_strdup (e != NULL ? e->value_nick : "");
  }
  return gst_value_serialize (value);
}

/* The URI of the current settings: every property away from its default. */
static gchar *
gst_vdit_src_uri_get_uri (GstURIHandler * handler)
{
  GObject *object = G_OBJECT (handler);
  GString *uri = g_string_new (GST_VDIT_URI_SCHEME ":///");
  GParamSpec **specs;
  gchar sep = '?';
  guint n;

  specs = gst_vdit_src_uri_properties (object, &n);
  for (guint i = 0; i < n; i++) {
    GValue value = G_VALUE_INIT;
    gchar *text, *escaped;

    g_value_init (&value, specs[i]->value_type);
    g_object_get_property (object, specs[i]->name, &value);
    if (g_param_value_defaults (specs[i], &value)) {
      g_value_unset (&value);
      continue;
    }
    text = gst_vdit_src_uri_value_string (&value);
    if (text != NULL) {
      escaped = g_uri_escape_string (text, NULL, TRUE);
      g_string_append_printf (uri, "%c%s=%s", sep, specs[i]->name, escaped);
      sep = '&';
      g_free (escaped);
    }
    g_free (text);
    g_value_unset (&value);
  }
  g_free (specs);
  return g_string_free (uri, FALSE);
}

/* value (already unescaped) as a value of spec's type, within its range. */
static gboolean
gst_vdit_src_uri_parse_value (GParamSpec * spec, const gchar * text,
    GValue * value, GError ** error)
{
  g_value_init (value, spec->value_type);
  if (G_VALUE_HOLDS_STRING (value))
    g_value_set_string (value, text);
  else if (!gst_value_deserialize (value, text))
    goto bad_value;
  if (g_param_value_validate (spec, value))
    goto out_of_range;
  return TRUE;

bad_value:
  {
    g_set_error (error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
        "Invalid value \"%s\" for %s in the vdit URI (a %s)", text,
        spec->name, g_type_name (spec->value_type));
    g_value_unset (value);
    return FALSE;
  }
out_of_range:
  {
    g_set_error (error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
        "Value \"%s\" for %s in the vdit URI is out of range", text,
        spec->name);
    g_value_unset (value);
    return FALSE;
  }
}

static gchar *
gst_vdit_src_uri_known_keys (GParamSpec ** specs, guint n)
{
  GString *keys = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append_printf (keys, "%s%s", i > 0 ? ", " : "", specs[i]->name);
  return g_string_free (keys, FALSE);
}

/* Every parameter is checked before any is applied: a bad URI changes
 * nothing. */
static gboolean
gst_vdit_src_uri_set_uri (GstURIHandler * handler, const gchar * uri_str,
    GError ** error)
{
  GObject *object = G_OBJECT (handler);
  GUri *uri = NULL;
  GHashTable *params = NULL;
  GParamSpec **specs = NULL;
  GValue *values = NULL;
  GHashTableIter iter;
  const gchar *key, *text, *path;
  GError *err = NULL;
  gboolean ok = FALSE;
  guint n;

  if (GST_STATE (handler) > GST_STATE_READY) {
    g_set_error (error, GST_URI_ERROR, GST_URI_ERROR_BAD_STATE,
        "Changing the URI of vditsrc is only possible in READY or NULL");
    return FALSE;
  }
  uri = g_uri_parse (uri_str, G_URI_FLAGS_ENCODED_QUERY, &err);
  if (uri == NULL)
    goto bad_uri;
  path = g_uri_get_path (uri);
  if (g_strcmp0 (g_uri_get_scheme (uri), GST_VDIT_URI_SCHEME) != 0 ||
      (g_uri_get_host (uri) != NULL && *g_uri_get_host (uri) != '\0') ||
      (*path != '\0' && strcmp (path, "/") != 0))
    goto bad_form;
  if (g_uri_get_query (uri) != NULL) {
    params = g_uri_parse_params (g_uri_get_query (uri), -1, "&",
        G_URI_PARAMS_WWW_FORM, &err);
    if (params == NULL)
      goto bad_uri;
  }

  specs = gst_vdit_src_uri_properties (object, &n);
  values = g_new0 (GValue, n);
  for (guint i = 0; i < n; i++) {
    text = params != NULL ? g_hash_table_lookup (params, specs[i]->name) : NULL;
    if (text == NULL) {
      g_value_init (&values[i], specs[i]->value_type);
      g_param_value_set_default (specs[i], &values[i]);
    } else if (!gst_vdit_src_uri_parse_value (specs[i], text, &values[i],
            error)) {
      goto done;
    }
  }
  if (params != NULL) {
    g_hash_table_iter_init (&iter, params);
    while (g_hash_table_iter_next (&iter, (gpointer *) & key, NULL)) {
      gboolean known = FALSE;

      for (guint i = 0; i < n && !known; i++)
        known = strcmp (key, specs[i]->name) == 0;
      if (!known)
        goto unknown_key;
    }
  }

  g_object_freeze_notify (object);
  for (guint i = 0; i < n; i++)
    g_object_set_property (object, specs[i]->name, &values[i]);
  g_object_thaw_notify (object);
  ok = TRUE;
  goto done;

bad_uri:
  {
    g_set_error (error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
        "Invalid vdit URI \"%s\": %s", uri_str, err->message);
    goto done;
  }
bad_form:
  {
    g_set_error (error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
        "Invalid vdit URI \"%s\": expected vdit:///?prompt=...&name=value",
        uri_str);
    goto done;
  }
unknown_key:
  {
    gchar *keys = gst_vdit_src_uri_known_keys (specs, n);

    g_set_error (error, GST_URI_ERROR, GST_URI_ERROR_BAD_URI,
        "Unknown parameter \"%s\" in the vdit URI (known: %s)", key, keys);
    g_free (keys);
    goto done;
  }
done:
  {
    if (values != NULL) {
      for (guint i = 0; i < n; i++) {
        if (G_IS_VALUE (&values[i]))
          g_value_unset (&values[i]);
      }
    }
    g_free (values);
    g_free (specs);
    if (params != NULL)
      g_hash_table_unref (params);
    if (uri != NULL)
      g_uri_unref (uri);
    g_clear_error (&err);
    return ok;
  }
}

static GstURIType
gst_vdit_src_uri_get_type (GType type)
{
  return GST_URI_SRC;
}

static const gchar *const *
gst_vdit_src_uri_get_protocols (GType type)
{
  static const gchar *const protocols[] = { GST_VDIT_URI_SCHEME, NULL };

  return protocols;
}

void
gst_vdit_src_uri_handler_init (gpointer g_iface, gpointer iface_data)
{
  GstURIHandlerInterface *iface = (GstURIHandlerInterface *) g_iface;

  iface->get_type = gst_vdit_src_uri_get_type;
  iface->get_protocols = gst_vdit_src_uri_get_protocols;
  iface->get_uri = gst_vdit_src_uri_get_uri;
  iface->set_uri = gst_vdit_src_uri_set_uri;
}
