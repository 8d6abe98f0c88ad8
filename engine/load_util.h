/* Reading the files of a model directory, which may come from anyone: regular files
 * only, and JSON that json-glib can parse without running out of stack. */
#ifndef VDIT_LOAD_UTIL_H
#define VDIT_LOAD_UTIL_H

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Deepest nesting of [ and { accepted in config.json and safetensors headers (the top
 * level counts as one; both formats need three). json-glib's parser recurses once per
 * level, so a deep enough text overflows the stack. */
#define VDIT_JSON_MAX_DEPTH 64

/* The whole of a regular file (NUL-terminated; *len without the NUL); a file of more
 * than max_size bytes is refused before anything is read. The file is opened without
 * blocking (a FIFO would wait for a writer for ever) and refused unless regular. Errors:
 * VDIT_ERROR_MISSING "path: no such file", VDIT_ERROR_FORMAT "path: not a regular file
 * (a FIFO)", "path: file of N bytes is too large (at most M bytes)", or a G_FILE_ERROR
 * naming the path. */
char *vdit_read_regular (const char *path, gsize max_size, gsize *len, GError **error);
/* A read-only mapping of a regular file, opened and checked as above. */
GMappedFile *vdit_map_regular (const char *path, GError **error);
/* The same check by stat(), for files a library opens itself (SentencePiece). */
gboolean vdit_check_regular (const char *path, GError **error);

/* Parses JSON text read from `origin` whose root must be an object. Before json-glib
 * sees the text, refuses nesting deeper than VDIT_JSON_MAX_DEPTH and what strict JSON
 * does not allow outside strings (json-glib also takes comments and single-quoted
 * strings, which could hide brackets from the count); afterwards, an object that names
 * a member twice (json-glib silently keeps the last). `what` names the text in messages
 * ("header" for "origin: header nested deeper than 64 levels"; NULL: the whole file,
 * "origin: JSON nested deeper than 64 levels"). Errors are VDIT_ERROR_FORMAT, one line.
 * The caller unrefs the parser. */
JsonParser *vdit_json_parse (const char *text, gsize len, const char *origin, const char *what,
                             GError **error);

G_END_DECLS

#endif
