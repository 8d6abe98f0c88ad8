/* Graphs of the stream's work: a step's forwards are recorded once with stream capture
 * and replayed (cudaGraphLaunch) on the following steps, one launch instead of
 * thousands. Recording is best effort: anything that fails inside it (an op that waits,
 * allocates outside the pool or is not capturable) spoils only the recording, and the
 * engine queues the same work again op by op. VDIT_CUDA_GRAPHS=0 turns graphs off. */
#include "cuda_ctx.h"

static gboolean
graphs_enabled (void)
{
  const char *v = g_getenv ("VDIT_CUDA_GRAPHS");
  return v == NULL || g_strcmp0 (v, "0") != 0;
}

gboolean
vdit_cuda_graph_begin (void *ctx)
{
  vdit_cuda_ctx *c = ctx;
  if (!graphs_enabled () || !vdit_cuda_enter (c))
    return FALSE;
  /* thread-local: another thread's CUDA calls do not spoil this recording */
  const cudaError_t err = cudaStreamBeginCapture (c->stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    cudaGetLastError ();
    g_debug ("CUDA graphs: cannot record: %s", cudaGetErrorString (err));
    return FALSE;
  }
  g_mutex_lock (&c->error_lock);
  c->capturing = TRUE;
  c->capture_failed = FALSE;
  g_mutex_unlock (&c->error_lock);
  return TRUE;
}

void *
vdit_cuda_graph_end (void *ctx)
{
  vdit_cuda_ctx *c = ctx;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  cudaError_t err = cudaStreamEndCapture (c->stream, &graph);
  g_mutex_lock (&c->error_lock);
  const gboolean failed = c->capture_failed;
  c->capturing = FALSE;
  g_mutex_unlock (&c->error_lock);
  size_t nodes = 0;
  if (err == cudaSuccess && !failed) {
    cudaGraphGetNodes (graph, NULL, &nodes);
    /* a recorded allocation left unfreed (cuBLAS may take its workspace inside the
     * recording) would otherwise make every launch after the first fail */
    err = cudaGraphInstantiateWithFlags (&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
  }
  if (graph)
    cudaGraphDestroy (graph);
  if (err != cudaSuccess || failed) {
    cudaGetLastError ();
    g_debug ("CUDA graphs: recording failed: %s",
             failed ? "an op inside it failed (debug messages above)" : cudaGetErrorString (err));
    if (exec)
      cudaGraphExecDestroy (exec);
    return NULL;
  }
  g_debug ("CUDA graphs: recorded %zu nodes", nodes);
  return exec;
}

void
vdit_cuda_graph_launch (void *ctx, void *graph)
{
  vdit_cuda_ctx *c = ctx;
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, cudaGraphLaunch ((cudaGraphExec_t) graph, c->stream));
}

void
vdit_cuda_graph_free (void *ctx, void *graph)
{
  vdit_cuda_ctx *c = ctx;
  if (graph && vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, cudaGraphExecDestroy ((cudaGraphExec_t) graph));
}
