/* Progress of a generation on stderr: a redrawn bar on a terminal, plain lines
 * otherwise (logs, pipes, tests). */
#ifndef VDIT_TOOLS_PROGRESS_H
#define VDIT_TOOLS_PROGRESS_H

#include <glib.h>

#include "vdit.h"

G_BEGIN_DECLS

typedef struct vdit_progress vdit_progress;

/* tty: draw a bar; quiet: print nothing. */
vdit_progress *vdit_progress_new (gboolean tty, gboolean quiet);
/* From the engine's progress callback: `step` of `steps` units of `stage` done. */
void vdit_progress_stage (vdit_progress *p, VditStage stage, int step, int steps);
/* Ends the bar's line (if one is drawn) and frees p. */
void vdit_progress_free (vdit_progress *p);

G_END_DECLS

#endif
