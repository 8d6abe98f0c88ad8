/* Temporary files renamed over their target, for outputs that must never be left half
 * written (see output_file.h). */
#include "output_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

/* A name of at most NAME_MAX (255) bytes once the dot and ".XXXXXX" are added. */
#define MAX_STEM 200

static gboolean
set_io_error (GError **error, int saved, const char *what, const char *name)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot %s '%s': %s", what,
               name, g_strerror (saved));
  return FALSE;
}

char *
vdit_output_file_resolve (const char *path, gboolean *in_place)
{
  GStatBuf st, lst;
  *in_place = FALSE;
  /* Absent (or a dangling link, which the new file then replaces). */
  if (g_stat (path, &st) != 0)
    return g_strdup (path);
  if (!S_ISREG (st.st_mode)) {
    *in_place = TRUE;
    return g_strdup (path);
  }
  if (g_lstat (path, &lst) == 0 && S_ISLNK (lst.st_mode)) {
    char *real = realpath (path, NULL);
    if (real != NULL) {
      char *copy = g_strdup (real);
      free (real);
      return copy;
    }
  }
  return g_strdup (path);
}

FILE *
vdit_output_file_create (const char *target, char **tmp_path, GError **error)
{
  char *dir = g_path_get_dirname (target);
  char *base = g_path_get_basename (target);
  if (strlen (base) > MAX_STEM)
    base[MAX_STEM] = '\0';
  char *stem = g_strconcat (".", base, ".XXXXXX", NULL);
  char *tmp = g_build_filename (dir, stem, NULL);
  g_free (dir);
  g_free (base);
  g_free (stem);

  /* Renaming would replace a file we may not write to; refuse, as opening it would. */
  if (g_access (target, W_OK) != 0 && errno != ENOENT) {
    set_io_error (error, errno, "write", target);
    g_free (tmp);
    return NULL;
  }
  int fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) {
    set_io_error (error, errno, "create", target);
    g_free (tmp);
    return NULL;
  }
  /* A new file gets 0666 less the umask (open applies it); a replaced one keeps its
   * permission bits. */
  GStatBuf st;
  FILE *file = NULL;
  if ((g_stat (target, &st) == 0 && fchmod (fd, st.st_mode & 0777) != 0) ||
      (file = fdopen (fd, "wb")) == NULL) {
    set_io_error (error, errno, "create", target);
    close (fd);
    g_unlink (tmp);
    g_free (tmp);
    return NULL;
  }
  *tmp_path = tmp;
  return file;
}

gboolean
vdit_output_file_close (FILE *file, const char *name, GError **error)
{
  int saved = 0;
  if (fflush (file) != 0 || fsync (fileno (file)) != 0)
    saved = errno;
  if (fclose (file) != 0 && saved == 0)
    saved = errno;
  return saved == 0 || set_io_error (error, saved, "write", name);
}

gboolean
vdit_output_file_commit (const char *tmp_path, const char *target, GError **error)
{
  if (g_rename (tmp_path, target) == 0)
    return TRUE;
  int saved = errno;
  g_unlink (tmp_path);
  return set_io_error (error, saved, "replace", target);
}
