/* Output files that appear whole or not at all: the data goes to a temporary file beside
 * the target (".<name>.XXXXXX" in the same folder, so renaming it over the target is
 * atomic), which replaces the target only when it is complete. */
#ifndef VDIT_TOOLS_OUTPUT_FILE_H
#define VDIT_TOOLS_OUTPUT_FILE_H

#include <glib.h>
#include <stdio.h>

G_BEGIN_DECLS

/* Where data meant for path has to go. A symbolic link is followed, so the file it leads
 * to is replaced and the link stays. *in_place is TRUE when that file exists but is not a
 * regular file (a device such as /dev/null, a FIFO): it cannot be replaced, only written
 * to. Returns a newly allocated path. */
char *vdit_output_file_resolve (const char *path, gboolean *in_place);

/* Creates the temporary for target and returns it open for writing ("wb"); *tmp_path
 * receives its name. It takes the permission bits of an existing target (otherwise
 * 0666 less the umask); an existing target we may not write to is an error, as it would
 * be for open(). Errors name target. */
FILE *vdit_output_file_create (const char *target, char **tmp_path, GError **error);

/* Flushes file, makes it durable (fsync) and closes it, even on failure; errors name
 * name. */
gboolean vdit_output_file_close (FILE *file, const char *name, GError **error);

/* Renames tmp_path over target; on failure removes tmp_path. */
gboolean vdit_output_file_commit (const char *tmp_path, const char *target, GError **error);

G_END_DECLS

#endif
