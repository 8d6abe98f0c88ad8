/* libFuzzer target: vdit_json_parse, the strict-JSON pre-scan (nesting depth, characters
 * outside strings, escapes) in front of json-glib and the repeated-member check after
 * it. The text is not NUL-terminated: the scan must stay inside len. The first byte
 * picks `what` (whole file or "header"). */
#include "load_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  const char *what = data[0] & 1 ? "header" : NULL;
  /* an exact-size copy, so that reading past len is caught */
  char *text = malloc (size - 1 ? size - 1 : 1);
  memcpy (text, data + 1, size - 1);
  GError *error = NULL;
  JsonParser *parser = vdit_json_parse (text, size - 1, "fuzz.json", what, &error);
  if (parser == NULL) {
    if (error == NULL || error->message == NULL || strchr (error->message, '\n') != NULL)
      abort (); /* errors are one line */
    g_error_free (error);
  } else {
    JsonNode *root = json_parser_get_root (parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
      abort ();
    g_object_unref (parser);
  }
  free (text);
  return 0;
}
