/* Open-Sora-Plan v1.2's CausalVideoVAE decoder in f32, on the host (the reference) or
 * with its layers on a backend that has the VAE slots (CUDA). Like the published sample script it decodes in overlapping spatial
 * tiles and temporal chunks once the latent exceeds a tile, blending the seams exactly
 * as CausalVAEModel.tiled_decode does (docs/model-format.md, "causal_video_vae"). */
#ifndef VDIT_VAE_DECODER_H
#define VDIT_VAE_DECODER_H

#include "backend.h"
#include "backend_timing.h"
#include "vdit.h"

G_BEGIN_DECLS

typedef struct vdit_vae_decoder vdit_vae_decoder;

/* dir: a converted model's vae/ folder (config.json with scaling_factor, vae.safetensors
 * from train/convert_osp.py --vae). Refuses other block layouts with a message. */
vdit_vae_decoder *vdit_vae_decoder_load (const char *dir, GError **error);
/* The decoder a vae/config.json describes, with seeded random weights instead of
 * vae.safetensors (benchmarks at full size without a checkpoint): convolutions uniform
 * in ±1/sqrt(fan_in) like a fresh PyTorch module, GroupNorm 1 and 0. */
vdit_vae_decoder *vdit_vae_decoder_new_random (const char *config_path, uint64_t seed,
                                               GError **error);
void vdit_vae_decoder_free (vdit_vae_decoder *v);
/* Tiling (vae/config.json, defaults the sample script's): latent tiles of `latent` ×
 * `latent` (decoded to `sample` × `sample` pixels) overlapping by `overlap` (a fraction),
 * temporal chunks of `latent_t` latent frames overlapping by one; latent_t 0 turns
 * tiling off. */
typedef struct {
  int latent, sample, latent_t;
  float overlap;
} vdit_vae_tiling;

void vdit_vae_decoder_set_tiling (vdit_vae_decoder *v, const vdit_vae_tiling *t);
vdit_vae_tiling vdit_vae_decoder_get_tiling (const vdit_vae_decoder *v);
/* The work of decoding a latent of T × h × w with the current tiling: FLOPs of the
 * convolutions and the attention GEMMs (2 per multiply-add; norms and upsampling not
 * counted), summed over the tiles of every temporal chunk; *chunks temporal chunks of
 * *tiles spatial tiles each (1 and 1 when decoded whole). */
double vdit_vae_decoder_flops (const vdit_vae_decoder *v, int T, int h, int w, int *chunks,
                               int *tiles);
/* While times is not NULL, the host ops of a decode without a device (the CPU) add
 * their host-clock times to it, by the kinds backend_timing.h gives the backend slots
 * (conv3d: gemm, GroupNorm: norm, upsampling: elementwise, attention: attention). */
void vdit_vae_decoder_time_host_ops (vdit_vae_decoder *v, vdit_op_times *times);
/* Host bytes vdit_vae_decode_stream holds at its peak for a latent of T × h × w: the
 * largest tile's layers walked as this decoder runs them (input, output and the
 * copies a ResNet block, the mid attention or an upsampling keeps alive at once, plus
 * the im2col band), the chunk's decoded tiles and frames, and the latent. */
uint64_t vdit_vae_decoder_peak_bytes (const vdit_vae_decoder *v, int T, int h, int w);
/* The same split between host and backend memory when the layers run on a backend
 * (on_device; the decoder's weights not counted, see vdit_vae_decoder_weight_bytes):
 * the backend holds the largest tile's layers and the im2col band, the host the
 * latent, the decoded tiles and frames. !on_device: *host is peak_bytes, *device 0. */
void vdit_vae_decoder_peak_split (const vdit_vae_decoder *v, int T, int h, int w,
                                  gboolean on_device, uint64_t *host, uint64_t *device);
/* Bytes of the decoder's f32 weights (what vdit_vae_device_new uploads). */
uint64_t vdit_vae_decoder_weight_bytes (const vdit_vae_decoder *v);
/* Latent channels (z_channels). */
int vdit_vae_decoder_channels (const vdit_vae_decoder *v);
/* video (1 + 4(T − 1), 8h, 8w, 3), values in about [−1, 1], unclamped ← latent
 * (T, h, w, C) as the DiT samples it (divided by scaling_factor here). */
gboolean vdit_vae_decode (vdit_vae_decoder *v, const float *latent, int T, int h, int w,
                          float *video, GError **error);
/* Frames [first, first + n) of the clip, (n, 8h, 8w, 3), as soon as a temporal chunk is
 * decoded. FALSE stops decoding; the callback then sets error. */
typedef gboolean (*vdit_vae_frames_cb) (void *user_data, int first, int n, const float *frames,
                                        GError **error);
/* The same, handing the frames out chunk by chunk (the whole clip at once when it fits
 * in one tile): the first frames leave before the last chunk is decoded. */
gboolean vdit_vae_decode_stream (vdit_vae_decoder *v, const float *latent, int T, int h, int w,
                                 vdit_vae_frames_cb on_frames, void *user_data, GError **error);

/* The decoder's layers on a backend instead of the host: backends with the vae_* slots
 * (CUDA) run them in f32 on their own memory, the weights uploaded once by
 * vdit_vae_device_new; tiles are blended and frames handed out on the host as before. */
typedef struct vdit_vae_device vdit_vae_device;

gboolean vdit_vae_device_supported (const vdit_backend *be);
/* v's weights on be (which must outlive the result, as must v); NULL with
 * VDIT_ERROR_NO_DEVICE when be lacks the slots, or be's allocation error. */
vdit_vae_device *vdit_vae_device_new (const vdit_vae_decoder *v, vdit_backend *be,
                                      GError **error);
void vdit_vae_device_free (vdit_vae_device *d);
/* vdit_vae_decode_stream with the layers on dev's backend (dev made from v; NULL: the
 * host). */
gboolean vdit_vae_decode_stream_on (vdit_vae_decoder *v, const vdit_vae_device *dev,
                                    const float *latent, int T, int h, int w,
                                    vdit_vae_frames_cb on_frames, void *user_data,
                                    GError **error);

/* RGB24 bytes of decoded values as Open-Sora-Plan's pipeline makes them:
 * uint8((x/2 + 0.5) clamped to [0, 1] · 255), truncated; NaN counts as 0. */
void vdit_vae_rgb (uint8_t *rgb, const float *values, size_t n);

G_END_DECLS

#endif
