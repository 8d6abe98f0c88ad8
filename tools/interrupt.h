/* Ctrl-C (SIGINT) and SIGTERM during a generation: the first one cancels the engine
 * cleanly (frames written so far stay valid), a second one kills the process. */
#ifndef VDIT_TOOLS_INTERRUPT_H
#define VDIT_TOOLS_INTERRUPT_H

#include <glib.h>

#include "vdit.h"

G_BEGIN_DECLS

/* Installs the handlers; a signal then calls vdit_cancel (ctx) from a watcher thread. */
gboolean vdit_interrupt_watch (vdit_ctx *ctx, GError **error);
/* Restores the previous handlers and stops the thread. TRUE if a signal arrived. */
gboolean vdit_interrupt_unwatch (void);

G_END_DECLS

#endif
