/* Device memory of the CUDA backends. Every device allocation goes through here, so the
 * process knows what its contexts hold on each device (vdit_gpu_memory_get: what a long
 * run watches for leaks), the test faults apply (alloc_fault.c, VDIT_CUDA_ALLOC_LIMIT),
 * and running out says how much was asked and how much the device had free. */
#include <stdint.h>
#include <stdlib.h>

#include "cuda_ctx.h"
#include "vdit.h"

#define MAX_DEVICES 64

typedef struct {
  size_t bytes;
  int device;
} block;

static GMutex lock;          /* guards everything below */
static GHashTable *blocks;   /* device pointer → block */
static guint64 held[MAX_DEVICES];
static guint64 held_total;
static guint64 limit;        /* 0: none */
static gboolean limit_read;  /* VDIT_CUDA_ALLOC_LIMIT looked at */

static void
read_limit_locked (void)
{
  if (limit_read)
    return;
  limit_read = TRUE;
  const char *env = g_getenv ("VDIT_CUDA_ALLOC_LIMIT");
  if (env == NULL || *env == '\0')
    return;
  char *end = NULL;
  const guint64 v = g_ascii_strtoull (env, &end, 10);
  if (end == env || *end != '\0')
    g_warning ("VDIT_CUDA_ALLOC_LIMIT=%s is not a number of bytes: ignored", env);
  else
    limit = v;
}

void
vdit_cuda_set_alloc_limit (guint64 bytes)
{
  g_mutex_lock (&lock);
  limit_read = TRUE;
  limit = bytes;
  g_mutex_unlock (&lock);
}

typedef enum { FAULT_NONE, FAULT_INJECTED, FAULT_LIMIT } fault_kind;

static fault_kind
fault_for (size_t bytes)
{
  if (vdit_fault_alloc_now ())
    return FAULT_INJECTED;
  g_mutex_lock (&lock);
  read_limit_locked ();
  const gboolean over = limit > 0 && held_total + bytes > limit;
  g_mutex_unlock (&lock);
  return over ? FAULT_LIMIT : FAULT_NONE;
}

static void
account (void *p, size_t bytes, int device)
{
  block *b = g_new (block, 1);
  b->bytes = bytes;
  b->device = device;
  g_mutex_lock (&lock);
  if (blocks == NULL)
    blocks = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  g_hash_table_insert (blocks, p, b);
  if (device >= 0 && device < MAX_DEVICES)
    held[device] += bytes;
  held_total += bytes;
  g_mutex_unlock (&lock);
}

static void
unaccount (void *p)
{
  g_mutex_lock (&lock);
  block *b = blocks ? g_hash_table_lookup (blocks, p) : NULL;
  if (b) {
    if (b->device >= 0 && b->device < MAX_DEVICES)
      held[b->device] -= b->bytes;
    held_total -= b->bytes;
    g_hash_table_remove (blocks, p);
  }
  g_mutex_unlock (&lock);
}

/* The out-of-memory error of an allocation of `bytes` for `what`. */
static GError *
oom_error (vdit_cuda_ctx *c, size_t bytes, const char *what, fault_kind kind, cudaError_t err)
{
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo (&free_b, &total_b);
  cudaGetLastError ();
  g_mutex_lock (&lock);
  const guint64 ours = c->device < MAX_DEVICES ? held[c->device] : 0, lim = limit;
  g_mutex_unlock (&lock);
  g_autofree char *asked = vdit_size_text (bytes), *free_s = vdit_size_text (free_b);
  g_autofree char *total_s = vdit_size_text (total_b), *ours_s = vdit_size_text (ours);
  g_autofree char *lim_s = vdit_size_text (lim);
  g_autofree char *why = kind == FAULT_LIMIT
    ? g_strdup_printf ("over the test limit VDIT_CUDA_ALLOC_LIMIT of %s", lim_s)
    : kind == FAULT_INJECTED ? g_strdup ("a fault injected by a test")
                             : g_strdup (cudaGetErrorString (err));
  return g_error_new (VDIT_ERROR, VDIT_ERROR_OUT_OF_MEMORY,
                      "out of GPU memory: cannot allocate %s for %s on CUDA device %d, which "
                      "has %s free of %s (vdit holds %s of it; %s): ask for fewer frames or "
                      "a smaller size, or free memory other programs hold on this GPU",
                      asked, what, c->device, free_s, total_s, ours_s, why);
}

/* cudaMallocAsync, once more after handing the pool's unused blocks back to the device. */
static cudaError_t
malloc_async (vdit_cuda_ctx *c, void **p, size_t bytes)
{
  cudaError_t err = cudaMallocAsync (p, bytes, c->stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError ();
    cudaStreamSynchronize (c->stream);
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool (&pool, c->device) == cudaSuccess)
      cudaMemPoolTrimTo (pool, 0);
    err = cudaMallocAsync (p, bytes, c->stream);
  }
  if (err != cudaSuccess)
    cudaGetLastError (); /* not sticky: nothing for the next kernel to report */
  return err;
}

static void *
alloc_any (vdit_cuda_ctx *c, size_t bytes, const char *what, gboolean fixed, GError **error)
{
  void *p = NULL;
  bytes = MAX (bytes, 1);
  if (!vdit_cuda_enter (c)) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND, "cannot select CUDA device %d",
                 c->device);
    return NULL;
  }
  /* inside a graph recording an allocation would become graph memory that the replays
   * keep or free on their own: refused, which spoils the recording (the engine then
   * queues the same work op by op, where the allocation is made as usual) */
  g_mutex_lock (&c->error_lock);
  const gboolean capturing = c->capturing;
  if (capturing)
    c->capture_failed = TRUE;
  g_mutex_unlock (&c->error_lock);
  if (capturing) {
    g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                 "CUDA device %d: %s cannot be allocated while a graph is recorded", c->device,
                 what);
    return NULL;
  }
  const fault_kind kind = fault_for (bytes);
  cudaError_t err = cudaErrorMemoryAllocation;
  if (kind == FAULT_NONE) {
    err = fixed ? cudaMalloc (&p, bytes) : malloc_async (c, &p, bytes);
    if (err != cudaSuccess)
      cudaGetLastError ();
  }
  if (err != cudaSuccess) {
    if (err == cudaErrorMemoryAllocation)
      g_propagate_error (error, oom_error (c, bytes, what, kind, err));
    else
      g_set_error (error, VDIT_ERROR, VDIT_ERROR_BACKEND,
                   "CUDA device %d: allocating %zu bytes for %s failed: %s", c->device, bytes,
                   what, cudaGetErrorString (err));
    return NULL;
  }
  account (p, bytes, c->device);
  return p;
}

void *
vdit_cuda_mem_alloc (vdit_cuda_ctx *c, size_t bytes, const char *what, GError **error)
{
  return alloc_any (c, bytes, what, FALSE, error);
}

void *
vdit_cuda_mem_scratch (vdit_cuda_ctx *c, size_t bytes, const char *what)
{
  GError *error = NULL;
  void *p = alloc_any (c, bytes, what, FALSE, &error);
  if (p == NULL)
    vdit_cuda_record_error (c, error);
  return p;
}

void
vdit_cuda_mem_free (vdit_cuda_ctx *c, void *p)
{
  if (p == NULL)
    return;
  unaccount (p);
  if (vdit_cuda_enter (c))
    VDIT_CUDA_CHECK (c, cudaFreeAsync (p, c->stream));
}

void *
vdit_cuda_mem_alloc_fixed (vdit_cuda_ctx *c, size_t bytes, const char *what, GError **error)
{
  return alloc_any (c, bytes, what, TRUE, error);
}

void
vdit_cuda_mem_free_fixed (vdit_cuda_ctx *c, void *p)
{
  if (p == NULL)
    return;
  unaccount (p);
  cudaFree (p);
  cudaGetLastError ();
}

gboolean
vdit_gpu_memory_get (int device, vdit_gpu_memory *mem)
{
  int n = 0, prev = -1;
  vdit_cuda_available (&n);
  if (device < 0 || device >= n || device >= MAX_DEVICES)
    return FALSE;
  size_t free_b = 0, total_b = 0;
  const gboolean had = cudaGetDevice (&prev) == cudaSuccess;
  gboolean ok = cudaSetDevice (device) == cudaSuccess &&
                cudaMemGetInfo (&free_b, &total_b) == cudaSuccess;
  if (had && prev != device)
    cudaSetDevice (prev); /* the caller's thread keeps its device */
  cudaGetLastError ();
  if (!ok)
    return FALSE;
  g_mutex_lock (&lock);
  mem->allocated = held[device];
  g_mutex_unlock (&lock);
  mem->device_used = total_b - free_b;
  mem->device_total = total_b;
  return TRUE;
}
