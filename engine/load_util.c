/* Files of a model directory: opened without blocking and refused unless regular; JSON
 * scanned before json-glib's recursive parser sees it. */
#include "load_util.h"

#include "vdit.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *
file_kind (mode_t mode)
{
  if (S_ISDIR (mode))
    return "a directory";
  if (S_ISFIFO (mode))
    return "a FIFO";
  if (S_ISCHR (mode))
    return "a character device";
  if (S_ISBLK (mode))
    return "a block device";
  if (S_ISSOCK (mode))
    return "a socket";
  return "of unknown type";
}

static void
set_errno_error (GError **error, const char *path, int err)
{
  if (err == ENOENT)
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_MISSING, "%s: no such file", path);
  else
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (err), "%s: %s", path,
                 g_strerror (err));
}

static gboolean
check_mode (const char *path, mode_t mode, GError **error)
{
  if (S_ISREG (mode))
    return TRUE;
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_FORMAT, "%s: not a regular file (%s)", path,
               file_kind (mode));
  return FALSE;
}

/* O_NONBLOCK makes open() return at once on a FIFO; it changes nothing for the regular
 * files that get past the fstat(). */
static int
open_regular (const char *path, struct stat *st, GError **error)
{
  int fd = g_open (path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0);
  if (fd < 0) {
    set_errno_error (error, path, errno);
    return -1;
  }
  if (fstat (fd, st) != 0) {
    set_errno_error (error, path, errno);
    close (fd);
    return -1;
  }
  if (!check_mode (path, st->st_mode, error)) {
    close (fd);
    return -1;
  }
  return fd;
}

gboolean
vdit_check_regular (const char *path, GError **error)
{
  GStatBuf st;
  if (g_stat (path, &st) != 0) {
    set_errno_error (error, path, errno);
    return FALSE;
  }
  return check_mode (path, st.st_mode, error);
}

static void
set_too_large (GError **error, const char *path, guint64 size, gsize max_size)
{
  g_set_error (error, VDIT_ERROR, VDIT_ERROR_FORMAT,
               "%s: file of %" G_GUINT64_FORMAT " bytes is too large (at most %" G_GSIZE_FORMAT
               " bytes)", path, size, max_size);
}

char *
vdit_read_regular (const char *path, gsize max_size, gsize *len, GError **error)
{
  struct stat st;
  int fd = open_regular (path, &st, error);
  if (fd < 0)
    return NULL;
  if ((guint64) st.st_size > max_size) {
    set_too_large (error, path, (guint64) st.st_size, max_size);
    close (fd);
    return NULL;
  }
  /* read to the end, whatever the size said: the file may change meanwhile */
  gsize cap = (gsize) st.st_size + 1, n = 0;
  char *buf = g_malloc (cap + 1);
  for (;;) {
    if (n == cap) {
      if (n > max_size) {
        set_too_large (error, path, n, max_size);
        break;
      }
      cap = MIN (2 * cap, max_size + 1);
      buf = g_realloc (buf, cap + 1);
    }
    ssize_t got = read (fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      set_errno_error (error, path, errno);
      break;
    }
    if (got == 0) {
      close (fd);
      buf[n] = '\0';
      *len = n;
      return buf;
    }
    n += (gsize) got;
  }
  close (fd);
  g_free (buf);
  return NULL;
}

GMappedFile *
vdit_map_regular (const char *path, GError **error)
{
  struct stat st;
  int fd = open_regular (path, &st, error);
  if (fd < 0)
    return NULL;
  GError *merr = NULL;
  GMappedFile *map = g_mapped_file_new_from_fd (fd, FALSE, &merr); /* keeps no reference */
  close (fd);
  if (map == NULL)
    g_propagate_prefixed_error (error, merr, "%s: ", path);
  return map;
}

/* --- JSON */

typedef enum {
  SCAN_OK,
  SCAN_TOO_DEEP,
  SCAN_BAD_CHAR,
  SCAN_BAD_ESCAPE,
} scan_result;

/* Walks the text as a strict JSON lexer does, counting the nesting of [ and { outside
 * strings. Outside strings only JSON's own characters pass (comments and single-quoted
 * strings, which json-glib takes, could hide brackets), and escapes in strings are
 * JSON's, so json-glib sees the same strings and the same brackets. What else is wrong
 * (unbalanced brackets, an unterminated string, bad numbers) is left to json-glib.
 * *at: where a refusal was found. */
static scan_result
scan (const char *text, gsize len, int max_depth, gsize *at)
{
  int depth = 0;
  gsize i = len >= 3 && memcmp (text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* json-glib skips a BOM */
  for (; i < len; i++) {
    const char c = text[i];
    *at = i;
    if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return SCAN_TOO_DEEP;
    } else if (c == ']' || c == '}') {
      if (depth > 0)
        depth--;
    } else if (c == '"') {
      for (i++; i < len && text[i] != '"'; i++) {
        if (text[i] != '\\' || i + 1 == len)
          continue;
        *at = i++;
        if (text[i] == 'u') {
          for (int k = 1; k <= 4; k++)
            if (i + k >= len || !g_ascii_isxdigit (text[i + k]))
              return SCAN_BAD_ESCAPE;
          i += 4;
        } else if (text[i] == '\0' || strchr ("\"\\/bfnrt", text[i]) == NULL) {
          return SCAN_BAD_ESCAPE;
        }
      }
    } else if (c == '\0' || (!g_ascii_isalnum (c) && strchr (" \t\n\r:,-+.", c) == NULL)) {
      return SCAN_BAD_CHAR;
    }
  }
  return SCAN_OK;
}

static guint
line_of (const char *text, gsize at)
{
  guint line = 1;
  for (gsize i = 0; i < at; i++)
    line += text[i] == '\n';
  return line;
}

/* Messages quote the file's own text (json-glib's token, a repeated key), which may hold
 * raw line breaks: control characters become escapes so that an error stays one line. */
static char *
one_line (const char *s)
{
  GString *out = g_string_sized_new (strlen (s));
  for (; *s != '\0'; s++) {
    const guchar c = (guchar) *s;
    if (c == '\n')
      g_string_append (out, "\\n");
    else if (c == '\r')
      g_string_append (out, "\\r");
    else if (c == '\t')
      g_string_append (out, "\\t");
    else if (c < 0x20 || c == 0x7f)
      g_string_append_printf (out, "\\x%02x", c);
    else
      g_string_append_c (out, (char) c);
  }
  return g_string_free (out, FALSE);
}

static gboolean G_GNUC_PRINTF (2, 3)
fail (GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  char *shown = one_line (msg);
  g_set_error_literal (error, VDIT_ERROR, VDIT_ERROR_FORMAT, shown);
  g_free (shown);
  g_free (msg);
  return FALSE;
}

static gboolean G_GNUC_PRINTF (4, 5)
fail_invalid (GError **error, const char *origin, const char *what, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fail (error, "%s: %s%snot valid JSON: %s", origin, what ? what : "", what ? " is " : "", why);
  g_free (why);
  return FALSE;
}

static gboolean
check_text (const char *text, gsize len, const char *origin, const char *what, GError **error)
{
  gsize at = 0;
  switch (scan (text, len, VDIT_JSON_MAX_DEPTH, &at)) {
    case SCAN_OK:
      return TRUE;
    case SCAN_TOO_DEEP:
      return fail (error, "%s: %s nested deeper than %d levels", origin, what ? what : "JSON",
                   VDIT_JSON_MAX_DEPTH);
    case SCAN_BAD_ESCAPE:
      return fail_invalid (error, origin, what, "bad escape in a string at line %u",
                           line_of (text, at));
    case SCAN_BAD_CHAR:
      break;
  }
  const guchar c = (guchar) text[at];
  char shown[8];
  if (g_ascii_isgraph (c))
    g_snprintf (shown, sizeof shown, "\"%c\"", c);
  else
    g_snprintf (shown, sizeof shown, "0x%02x", c);
  return fail_invalid (error, origin, what, "unexpected character %s at line %u%s", shown,
                       line_of (text, at),
                       c == '/' || c == '\'' ? " (comments and single quotes are not JSON)" : "");
}

/* json-glib keeps the last of duplicated members silently; an object that does not grow
 * when a member is added had that name already. */
typedef struct {
  GHashTable *sizes; /* JsonObject* -> size after its last member */
  char *duplicate;   /* first repeated name */
} dup_check;

static void
on_member (JsonParser *parser, JsonObject *object, const char *name, gpointer user_data)
{
  dup_check *d = user_data;
  guint size = json_object_get_size (object);
  if (d->duplicate == NULL && size == GPOINTER_TO_UINT (g_hash_table_lookup (d->sizes, object)))
    d->duplicate = g_strdup (name);
  g_hash_table_insert (d->sizes, object, GUINT_TO_POINTER (size));
}

JsonParser *
vdit_json_parse (const char *text, gsize len, const char *origin, const char *what,
                 GError **error)
{
  if (!check_text (text, len, origin, what, error))
    return NULL;
  JsonParser *parser = json_parser_new ();
  GError *jerr = NULL;
  dup_check dup = { g_hash_table_new (NULL, NULL), NULL };
  g_signal_connect (parser, "object-member", G_CALLBACK (on_member), &dup);
  gboolean ok = json_parser_load_from_data (parser, text, (gssize) len, &jerr);
  JsonNode *root = ok ? json_parser_get_root (parser) : NULL;
  if (!ok)
    fail_invalid (error, origin, what, "%s", jerr->message);
  else if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    ok = fail (error, "%s: %s is not a JSON object", origin, what ? what : "top level");
  else if (dup.duplicate != NULL && what != NULL)
    ok = fail (error, "%s: %s names '%s' twice", origin, what, dup.duplicate);
  else if (dup.duplicate != NULL)
    ok = fail (error, "%s: key '%s' appears twice in one object", origin, dup.duplicate);
  g_signal_handlers_disconnect_by_data (parser, &dup);
  g_clear_error (&jerr);
  g_hash_table_unref (dup.sizes);
  g_free (dup.duplicate);
  if (!ok)
    g_clear_object (&parser);
  return parser;
}
