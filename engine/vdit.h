/* vdit — video diffusion transformer engine, public C API.
 *
 * A model is loaded once (vdit_model_load), a context binds it to a backend
 * (vdit_ctx_new), and vdit_generate turns a prompt into frames, handing each RGB
 * frame to a callback as soon as it is decoded. Every failure is a GError in
 * VDIT_ERROR (or G_IO_ERROR for plain file problems) whose message names the
 * file, tensor or value at fault. The library never exits or aborts.
 */
#ifndef VDIT_H
#define VDIT_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define VDIT_ERROR (vdit_error_quark ())
GQuark vdit_error_quark (void);

typedef enum {
  VDIT_ERROR_FORMAT,           /* malformed file: header, offsets, dtype, json */
  VDIT_ERROR_CONFIG,           /* config value out of range or inconsistent */
  VDIT_ERROR_MISSING,          /* a required file or tensor is absent */
  VDIT_ERROR_SHAPE,            /* tensor shape differs from what the config implies */
  VDIT_ERROR_INVALID_ARGUMENT, /* bad generation parameter (prompt, frames, steps…) */
  VDIT_ERROR_NO_DEVICE,        /* requested backend/GPU not available */
  VDIT_ERROR_OUT_OF_MEMORY,    /* allocation failed (message has the numbers) */
  VDIT_ERROR_BACKEND,          /* a backend call failed */
  VDIT_ERROR_CANCELLED,        /* vdit_cancel() was called */
  VDIT_ERROR_NOT_FINITE,       /* the latent became NaN/inf: broken weights or sampler settings */
} VditError;

typedef enum {
  VDIT_DEVICE_AUTO,
  VDIT_DEVICE_CPU,
  VDIT_DEVICE_CUDA,
} VditDevice;

typedef enum {
  VDIT_ATTENTION_DEFAULT = -1, /* what the model's config.json says */
  VDIT_ATTENTION_FULL = 0,
  VDIT_ATTENTION_TILE,
  VDIT_ATTENTION_ADAPTIVE,
} VditAttention;

typedef enum {
  VDIT_STAGE_ENCODE_TEXT,
  VDIT_STAGE_DENOISE,
  VDIT_STAGE_DECODE,
} VditStage;

typedef struct vdit_model vdit_model;
typedef struct vdit_ctx vdit_ctx;

/* What a host needs to know about a loaded model. Strings are owned by the model. */
typedef struct {
  const char *name;
  const char *path;
  int width, height;      /* output frame size in pixels */
  int frames;             /* default number of frames */
  int frame_multiple;     /* valid frame counts are frame_offset + k·frame_multiple */
  int frame_offset;
  double fps;             /* default frame rate */
  int steps;              /* default sampling steps */
  float guidance;         /* default guidance scale */
  VditAttention attention;/* default attention policy */
  int64_t n_params;
} vdit_model_info;

/* Called from the generating thread. */
typedef void (*vdit_progress_cb) (void *user_data, VditStage stage, int step, int steps);
/* One decoded frame: packed RGB24, rows of `stride` bytes. The pixels are valid only
 * during the call. Return FALSE to stop generation (it then fails with CANCELLED). */
typedef gboolean (*vdit_frame_cb) (void *user_data, int index, int n_frames,
                                   const uint8_t *rgb, int width, int height, int stride);
typedef void (*vdit_log_cb) (void *user_data, GLogLevelFlags level, const char *message);

typedef struct {
  VditDevice device;    /* default AUTO: CUDA when a GPU is present, else CPU */
  int device_id;        /* first GPU to use; -1 = auto (0) */
  int gpus;             /* number of GPUs for sequence parallelism; default 1 */
  int threads;          /* CPU threads; 0 = the CPUs this process may use (affinity,
                           cgroup quota, physical cores); at most 4 per such CPU */
  vdit_log_cb log;
  void *log_user_data;
} vdit_ctx_params;

/* The guidance scale: exactly -1 asks for the model's default; 0 ≤ g ≤ 1 disables
 * guidance (one pass a step, the negative prompt unused); 1 < g ≤ VDIT_GUIDANCE_MAX
 * guides, out = u + g·(c − u). Any other value (another negative one, NaN, ±inf, more
 * than the maximum) is VDIT_ERROR_INVALID_ARGUMENT naming the value, never the default. */
#define VDIT_GUIDANCE_DEFAULT (-1.0f)
#define VDIT_GUIDANCE_MAX 100.0f

typedef struct {
  const char *prompt;           /* required, non-empty */
  const char *negative_prompt;  /* NULL or "" = unconditional */
  int frames;                   /* 0 = model default */
  int steps;                    /* 0 = model default */
  float guidance;               /* VDIT_GUIDANCE_DEFAULT (-1) = the model's; see below */
  uint64_t seed;
  VditAttention attention;      /* DEFAULT = model's */
  float sparsity;               /* adaptive: target fraction of skipped blocks; < 0 = model's */
  vdit_progress_cb progress;
  vdit_frame_cb on_frame;
  void *user_data;
} vdit_gen_params;

/* dir: a model directory; or a config.json file alone, which gives that architecture with
 * random weights (vdit_model_new_random, seed 0) and no tokenizer. */
vdit_model *vdit_model_load (const char *dir, GError **error);
/* A model with the architecture of config.json and seeded random weights (benchmarks). */
vdit_model *vdit_model_new_random (const char *config_path, uint64_t seed, GError **error);
void vdit_model_free (vdit_model *model);
const vdit_model_info *vdit_model_get_info (const vdit_model *model);
/* Checks a frame count against the model (and the bound of 4096 frames a generation);
 * FALSE with VDIT_ERROR_INVALID_ARGUMENT. */
gboolean vdit_model_check_frames (const vdit_model *model, int frames, GError **error);

void vdit_ctx_params_init (vdit_ctx_params *params);
/* Checks the device request (device, device_id, gpus) against the GPUs present without
 * loading anything, as vdit_ctx_new does first: FALSE with VDIT_ERROR_INVALID_ARGUMENT or
 * VDIT_ERROR_NO_DEVICE. cuda_device (may be NULL) receives the CUDA device to use, or −1
 * for the CPU. */
gboolean vdit_ctx_params_check (const vdit_ctx_params *params, int *cuda_device,
                                GError **error);
/* Fails with VDIT_ERROR_OUT_OF_MEMORY (the numbers in the message) before loading the
 * weights when the model's shortest clip would not fit in the host's memory (physical,
 * or the cgroup's limit; on the CPU backend weights and activations count too). */
vdit_ctx *vdit_ctx_new (vdit_model *model, const vdit_ctx_params *params, GError **error);
/* Another context on base's model and uploaded weights, with its own cancel flag
 * and log: generations on it and on base (or other such contexts) may run at the same
 * time from different threads. base must outlive it. On the CPU it gets a thread pool of
 * its own; on CUDA a stream, cuBLAS handles and scratch of its own on base's device, and
 * the weights base uploaded there are not uploaded again. Not for a context of a
 * parallel job (VDIT_ERROR_INVALID_ARGUMENT). */
vdit_ctx *vdit_ctx_new_shared (vdit_ctx *base, vdit_log_cb log, void *log_user_data,
                               GError **error);
void vdit_ctx_free (vdit_ctx *ctx);
/* "cpu" or "cuda": the backend actually in use. */
const char *vdit_ctx_get_device_name (const vdit_ctx *ctx);

void vdit_gen_params_init (vdit_gen_params *params);
/* What vdit_generate checks before any work, without doing any: every parameter
 * (VDIT_ERROR_INVALID_ARGUMENT) and the memory the clip needs against the host's
 * (VDIT_ERROR_OUT_OF_MEMORY, with the estimate and what the host has). Allocates
 * nothing; for hosts that want to refuse a request up front. */
gboolean vdit_gen_params_check (vdit_ctx *ctx, const vdit_gen_params *params, GError **error);
/* Blocking. Returns FALSE with a GError on failure or cancellation; a latent that becomes
 * NaN or infinite (broken weights or sampler settings) fails with VDIT_ERROR_NOT_FINITE
 * naming the step, instead of decoding to grey frames. */
gboolean vdit_generate (vdit_ctx *ctx, const vdit_gen_params *params, GError **error);
/* Thread-safe: makes a running (or the next) vdit_generate stop and fail with
 * VDIT_ERROR_CANCELLED. On the CPU dense attention checks between chunks of query rows
 * and a block between its parts, so the stop comes within a fraction of a second even
 * for the longest clip; on a GPU, within one transformer block's queued work. */
void vdit_cancel (vdit_ctx *ctx);
/* Clears a cancel request so the context can generate again. */
void vdit_reset_cancel (vdit_ctx *ctx);

/* Whether a CUDA device is usable (built with CUDA and a GPU present); cheap after the
 * first call. */
gboolean vdit_cuda_available (int *n_devices);

/* Memory on CUDA device `device`, for hosts that watch it over a long run: `allocated` is
 * what this process's vdit contexts hold there (weights, activations, scratch, each
 * context's fixed buffers); `device_used` is the device's total less its free memory
 * (cudaMemGetInfo: it also counts CUDA's own contexts, memory kept in pools for reuse
 * and other processes). FALSE without CUDA or that device. */
typedef struct {
  guint64 allocated;
  guint64 device_used;
  guint64 device_total;
} vdit_gpu_memory;
gboolean vdit_gpu_memory_get (int device, vdit_gpu_memory *mem);

const char *vdit_attention_name (VditAttention mode);
gboolean vdit_attention_from_name (const char *name, VditAttention *mode);

G_END_DECLS

#endif /* VDIT_H */
