/* Compact JSON output, one document per line. */
#include "json_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void
vdit_json_init (vdit_json *j)
{
  j->text = g_string_new (NULL);
  j->need_comma = FALSE;
}

static void
append_escaped (GString *s, const char *value)
{
  g_string_append_c (s, '"');
  for (const unsigned char *p = (const unsigned char *) value; *p; p++) {
    switch (*p) {
    case '"': g_string_append (s, "\\\""); break;
    case '\\': g_string_append (s, "\\\\"); break;
    case '\n': g_string_append (s, "\\n"); break;
    case '\r': g_string_append (s, "\\r"); break;
    case '\t': g_string_append (s, "\\t"); break;
    default:
      if (*p < 0x20)
        g_string_append_printf (s, "\\u%04x", *p);
      else
        g_string_append_c (s, (char) *p); /* UTF-8 passes through */
    }
  }
  g_string_append_c (s, '"');
}

/* The comma before a value and its member name, if any. */
static void
start_value (vdit_json *j, const char *key)
{
  if (j->need_comma)
    g_string_append_c (j->text, ',');
  if (key != NULL) {
    append_escaped (j->text, key);
    g_string_append_c (j->text, ':');
  }
  j->need_comma = TRUE;
}

void
vdit_json_begin_object (vdit_json *j, const char *key)
{
  start_value (j, key);
  g_string_append_c (j->text, '{');
  j->need_comma = FALSE;
}

void
vdit_json_end_object (vdit_json *j)
{
  g_string_append_c (j->text, '}');
  j->need_comma = TRUE;
}

void
vdit_json_begin_array (vdit_json *j, const char *key)
{
  start_value (j, key);
  g_string_append_c (j->text, '[');
  j->need_comma = FALSE;
}

void
vdit_json_end_array (vdit_json *j)
{
  g_string_append_c (j->text, ']');
  j->need_comma = TRUE;
}

void
vdit_json_string (vdit_json *j, const char *key, const char *value)
{
  start_value (j, key);
  if (value == NULL)
    g_string_append (j->text, "null");
  else
    append_escaped (j->text, value);
}

void
vdit_json_int (vdit_json *j, const char *key, int64_t value)
{
  start_value (j, key);
  g_string_append_printf (j->text, "%" G_GINT64_FORMAT, (gint64) value);
}

static void
append_number (vdit_json *j, const char *key, double value, gboolean as_float)
{
  start_value (j, key);
  if (!isfinite (value)) {
    g_string_append (j->text, "null"); /* JSON has no inf or NaN */
    return;
  }
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  for (int digits = 1; digits <= 17; digits++) {
    char format[8];
    g_snprintf (format, sizeof format, "%%.%dg", digits);
    g_ascii_formatd (buf, sizeof buf, format, value);
    double back = g_ascii_strtod (buf, NULL);
    if (as_float ? (float) back == (float) value : back == value)
      break;
  }
  g_string_append (j->text, buf);
}

void
vdit_json_double (vdit_json *j, const char *key, double value)
{
  append_number (j, key, value, FALSE);
}

void
vdit_json_float (vdit_json *j, const char *key, float value)
{
  append_number (j, key, value, TRUE);
}

void
vdit_json_bool (vdit_json *j, const char *key, gboolean value)
{
  start_value (j, key);
  g_string_append (j->text, value ? "true" : "false");
}

void
vdit_json_print_line (vdit_json *j)
{
  /* Raw UTF-8 whatever the locale: g_print would convert the charset. */
  fputs (j->text->str, stdout);
  fputc ('\n', stdout);
  fflush (stdout);
  g_string_free (j->text, TRUE);
  j->text = NULL;
}
