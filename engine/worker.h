/* The ranks of a parallel job other than 0. Rank 0 runs the host (`vdit generate`, or the
 * GStreamer element) and announces each generation with vdit_sp_job_send (vdit_generate
 * does it); every other rank waits in vdit_worker_serve, loads the same model, and runs
 * its share of the same generation, until rank 0 sends the stop. */
#ifndef VDIT_WORKER_H
#define VDIT_WORKER_H

#include "comm.h"
#include "vdit.h"

G_BEGIN_DECLS

/* Rank 0: the next generation: the model directory (as the other ranks can open it) and
 * the parameters (callbacks are not sent). */
gboolean vdit_sp_job_send (const vdit_comm *comm, const char *model_dir,
                           const vdit_gen_params *params, GError **error);
/* Rank 0: no more generations; vdit_worker_serve returns TRUE on every other rank. */
gboolean vdit_sp_job_send_stop (const vdit_comm *comm, GError **error);

/* Ranks other than 0: runs generations as rank 0 announces them until the stop. model may
 * be NULL or the model the first job will likely name (kept, not freed); ctx_params
 * choose this rank's device and threads. idle_timeout_s bounds the wait for the next job
 * (<= 0: no bound: the host may sit idle between clips). FALSE with the error of the
 * first failure: the caller should then end the job (vdit_comm_abort). */
gboolean vdit_worker_serve (const vdit_comm *comm, vdit_model *model,
                            const vdit_ctx_params *ctx_params, double idle_timeout_s,
                            GError **error);

/* The same on a context the caller made (the helper threads of an in-process job: their
 * model is rank 0's, their communicators already set). TRUE at the stop; FALSE at the
 * first failure, the context then left as it is. */
gboolean vdit_worker_serve_ctx (const vdit_comm *comm, vdit_ctx *ctx, GError **error);

G_END_DECLS

#endif
