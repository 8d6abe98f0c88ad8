"""A PyTorch reference of Open-Sora-Plan v1.2's CausalVideoVAE (CausalVAEModel_D4_4x8x8),
written from the published modules (opensora/models/causalvideovae/model/modules/*.py and
causal_vae/modeling_causalvae.py at v1.2.0). Module names match the published
checkpoint, so `state_dict()` has its tensor names. The decoder runs (decode(z) =
decoder(post_quant_conv(z / 0.18215)), without tiling, as the model does for latents of
at most 8 frames and 64 × 64); the encoder is built for its parameters only (the
checkpoint holds them; video generation never runs it).

Which block each level uses comes from the VAE's config.json; VAE_CONFIG below is the
published one as far as it is known here: the decoder's classes are those recorded in
../shared/OPEN-SORA-PLAN-1.2.md, the encoder's are *unconfirmed* (not read from the file)."""

import torch
import torch.nn.functional as F
from torch import nn

SCALING_FACTOR = 0.18215

VAE_CONFIG = {
    "_class_name": "CausalVAEModel", "attn_resolutions": [], "dropout": 0.0,
    "hidden_size": 128, "hidden_size_mult": [1, 2, 4, 4], "num_res_blocks": 2,
    "z_channels": 4, "embed_dim": 4, "double_z": True, "resolution": 256,
    "q_conv": "CausalConv3d", "use_quant_layer": True,
    "decoder_conv_in": "CausalConv3d", "decoder_conv_out": "CausalConv3d",
    "decoder_attention": "AttnBlock3DFix", "decoder_mid_resnet": "ResnetBlock3D",
    "decoder_resnet_blocks": ["ResnetBlock3D"] * 4,
    "decoder_spatial_upsample": ["", "SpatialUpsample2x", "Spatial2xTime2x3DUpsample",
                                 "Spatial2xTime2x3DUpsample"],
    "decoder_temporal_upsample": ["", "", "", ""],
    "encoder_conv_in": "Conv2d", "encoder_conv_out": "CausalConv3d",
    "encoder_attention": "AttnBlock3DFix", "encoder_mid_resnet": "ResnetBlock3D",
    "encoder_resnet_blocks": ["ResnetBlock2D", "ResnetBlock2D", "ResnetBlock3D", "ResnetBlock3D"],
    "encoder_spatial_downsample": ["Downsample", "Spatial2xTime2x3DDownsample",
                                   "Spatial2xTime2x3DDownsample", ""],
    "encoder_temporal_downsample": ["", "", "", ""],
}

# Shrunken: GroupNorm's 32 groups need channels divisible by 32.
TINY_VAE_CONFIG = dict(VAE_CONFIG, hidden_size=32)


def silu(x):
    return x * torch.sigmoid(x)


def group_norm(c):
    return nn.GroupNorm(num_groups=32, num_channels=c, eps=1e-6, affine=True)


class CausalConv3d(nn.Module):
    """Conv3d with no temporal padding; the first frame repeated k_t − 1 times in front."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        k = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,) * 3
        pad = list(padding) if isinstance(padding, (tuple, list)) else [padding] * 3
        pad[0] = 0
        self.kt = k[0]
        self.conv = nn.Conv3d(cin, cout, k, stride=stride, padding=tuple(pad))

    def forward(self, x):
        front = x[:, :, :1].repeat(1, 1, self.kt - 1, 1, 1)
        return self.conv(torch.cat([front, x], dim=2))


class Conv2dPerFrame(nn.Conv2d):
    def forward(self, x):
        b, c, t, h, w = x.shape
        y = super().forward(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class ResnetBlock3D(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.norm1 = group_norm(cin)
        self.conv1 = CausalConv3d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout)
        self.conv2 = CausalConv3d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = CausalConv3d(cin, cout, 1, padding=0)

    def forward(self, x):
        h = self.conv1(silu(self.norm1(x)))
        h = self.conv2(silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.cin != self.cout else x) + h


class ResnetBlock2D(nn.Module):
    """Parameters only (encoder)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)


class AttnBlock3DFix(nn.Module):
    """Single-head attention over each frame's pixels (C channels), residual."""

    def __init__(self, c):
        super().__init__()
        self.norm = group_norm(c)
        self.q = CausalConv3d(c, c, 1)
        self.k = CausalConv3d(c, c, 1)
        self.v = CausalConv3d(c, c, 1)
        self.proj_out = CausalConv3d(c, c, 1)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, t, hh, ww = q.shape

        def frames(y):  # (b t) (h w) c
            return y.permute(0, 2, 3, 4, 1).reshape(b * t, hh * ww, c)

        att = torch.softmax(frames(q) @ frames(k).transpose(1, 2) * c ** -0.5, dim=-1)
        out = (att @ frames(v)).reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)
        return x + self.proj_out(out)


class SpatialUpsample2x(nn.Module):
    """Nearest ×2 in space per frame, then a (1, 3, 3) causal conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, (1, 3, 3), padding=1)

    def forward(self, x):
        b, c, t, h, w = x.shape
        x = F.interpolate(x.reshape(b, c * t, h, w), scale_factor=(2, 2), mode="nearest")
        return self.conv(x.reshape(b, c, t, 2 * h, 2 * w))


class Spatial2xTime2x3DUpsample(nn.Module):
    """The first frame trilinear ×(1, 2, 2), the others ×(2, 2, 2): T → 2T − 1."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, 3, padding=1)

    def forward(self, x):
        if x.shape[2] > 1:
            first, rest = x[:, :, :1], x[:, :, 1:]
            rest = F.interpolate(rest, scale_factor=(2, 2, 2), mode="trilinear")
            first = F.interpolate(first, scale_factor=(1, 2, 2), mode="trilinear")
            x = torch.cat([first, rest], dim=2)
        else:
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="trilinear")
        return self.conv(x)


class Downsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2)


class Spatial2xTime2x3DDownsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, 3, stride=2)


BLOCKS = {"ResnetBlock3D": ResnetBlock3D, "ResnetBlock2D": ResnetBlock2D,
          "AttnBlock3DFix": AttnBlock3DFix, "SpatialUpsample2x": SpatialUpsample2x,
          "Spatial2xTime2x3DUpsample": Spatial2xTime2x3DUpsample, "Downsample": Downsample,
          "Spatial2xTime2x3DDownsample": Spatial2xTime2x3DDownsample}


def _conv(kind, cin, cout):
    return Conv2dPerFrame(cin, cout, 3, padding=1) if kind == "Conv2d" \
        else CausalConv3d(cin, cout, 3, padding=1)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hs, mult = cfg["hidden_size"], cfg["hidden_size_mult"]
        self.conv_in = _conv(cfg["encoder_conv_in"], 3, hs)
        in_mult = (1,) + tuple(mult)
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            level = nn.Module()
            block_in, block_out = hs * in_mult[i], hs * m
            level.block = nn.ModuleList()
            for _ in range(cfg["num_res_blocks"]):
                level.block.append(BLOCKS[cfg["encoder_resnet_blocks"][i]](block_in, block_out))
                block_in = block_out
            level.attn = nn.ModuleList()
            if cfg["encoder_spatial_downsample"][i]:
                level.downsample = BLOCKS[cfg["encoder_spatial_downsample"][i]](block_in, block_in)
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = BLOCKS[cfg["encoder_mid_resnet"]](block_in, block_in)
        self.mid.attn_1 = BLOCKS[cfg["encoder_attention"]](block_in)
        self.mid.block_2 = BLOCKS[cfg["encoder_mid_resnet"]](block_in, block_in)
        self.norm_out = group_norm(block_in)
        z = cfg["z_channels"] * (2 if cfg["double_z"] else 1)
        self.conv_out = _conv(cfg["encoder_conv_out"], block_in, z)


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hs, mult = cfg["hidden_size"], cfg["hidden_size_mult"]
        block_in = hs * mult[-1]
        self.conv_in = _conv(cfg["decoder_conv_in"], cfg["z_channels"], block_in)
        self.mid = nn.Module()
        self.mid.block_1 = BLOCKS[cfg["decoder_mid_resnet"]](block_in, block_in)
        self.mid.attn_1 = BLOCKS[cfg["decoder_attention"]](block_in)
        self.mid.block_2 = BLOCKS[cfg["decoder_mid_resnet"]](block_in, block_in)
        levels = []
        for i in reversed(range(len(mult))):
            level = nn.Module()
            block_out = hs * mult[i]
            level.block = nn.ModuleList()
            for _ in range(cfg["num_res_blocks"] + 1):
                level.block.append(BLOCKS[cfg["decoder_resnet_blocks"][i]](block_in, block_out))
                block_in = block_out
            level.attn = nn.ModuleList()
            if cfg["decoder_spatial_upsample"][i]:
                level.upsample = BLOCKS[cfg["decoder_spatial_upsample"][i]](block_in, block_in)
            if cfg["decoder_temporal_upsample"][i]:
                raise ValueError("decoder_temporal_upsample is not used by Open-Sora-Plan v1.2")
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = _conv(cfg["decoder_conv_out"], block_in, 3)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(silu(self.norm_out(h)))


class CausalVAE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = CausalConv3d(2 * cfg["z_channels"], 2 * cfg["embed_dim"], 1)
        self.post_quant_conv = CausalConv3d(cfg["embed_dim"], cfg["z_channels"], 1)

    def decode(self, latents):
        """latents [B, 4, T, h, w] as the DiT samples them → video [B, 3, 1 + 4(T − 1),
        8h, 8w] in [−1, 1] (not clamped): CausalVAEModelWrapper.decode without tiling."""
        return self.decoder(self.post_quant_conv(latents / SCALING_FACTOR))


# The sample script's tiling (opensora/sample/sample_t2v.py, --enable_tiling at 720p):
# latent tiles of 64 × 64 (512 × 512 pixels) overlapping by 1/8, chunks of 8 latent frames.
TILING = {"tile_latent_min_size": 64, "tile_sample_min_size": 512,
          "tile_latent_min_size_t": 8, "tile_overlap_factor": 0.125}


def _blend_v(a, b, extent):
    extent = min(a.shape[3], b.shape[3], extent)
    for y in range(extent):
        b[:, :, :, y, :] = a[:, :, :, -extent + y, :] * (1 - y / extent) + \
            b[:, :, :, y, :] * (y / extent)
    return b


def _blend_h(a, b, extent):
    extent = min(a.shape[4], b.shape[4], extent)
    for x in range(extent):
        b[:, :, :, :, x] = a[:, :, :, :, -extent + x] * (1 - x / extent) + \
            b[:, :, :, :, x] * (x / extent)
    return b


def _tiled_decode2d(model, z, t):
    """CausalVAEModel.tiled_decode2d: overlapping latent tiles decoded one by one, each
    blended in place with the tile above and the tile to its left, then cropped."""
    lat, smp = t["tile_latent_min_size"], t["tile_sample_min_size"]
    overlap = int(lat * (1 - t["tile_overlap_factor"]))
    extent = int(smp * t["tile_overlap_factor"])
    limit = smp - extent
    rows = []
    for i in range(0, z.shape[3], overlap):
        rows.append([model.decoder(model.post_quant_conv(z[:, :, :, i:i + lat, j:j + lat]))
                     for j in range(0, z.shape[4], overlap)])
    out_rows = []
    for i, row in enumerate(rows):
        out = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = _blend_v(rows[i - 1][j], tile, extent)
            if j > 0:
                tile = _blend_h(row[j - 1], tile, extent)
            out.append(tile[:, :, :, :limit, :limit])
        out_rows.append(torch.cat(out, dim=4))
    return torch.cat(out_rows, dim=3)


def temporal_chunks(t, chunk):
    """CausalVAEModel.tiled_decode's [start, end) chunks of latent frames: starts every
    chunk − 1 frames, each overlapping the next by one frame."""
    idx = list(range(0, t, chunk - 1))
    if len(idx) == 1 and idx[0] == 0:
        return [[0, t]]
    spans = [[idx[i], idx[i + 1] + 1] for i in range(len(idx) - 1)]
    if spans[-1][-1] > t:
        spans[-1][-1] = t
    elif spans[-1][-1] < t:
        spans.append([idx[-1], t])
    return spans


def decode_tiled(model, latents, t=TILING):
    """decode() with tiling enabled, as the sample script runs it: tiles only when the
    latent exceeds a tile in some dimension; later chunks drop their first frame."""
    z = latents / SCALING_FACTOR
    lat, lat_t = t["tile_latent_min_size"], t["tile_latent_min_size_t"]
    if not (z.shape[-1] > lat or z.shape[-2] > lat or z.shape[-3] > lat_t):
        return model.decoder(model.post_quant_conv(z))
    parts = []
    for n, (start, end) in enumerate(temporal_chunks(z.shape[2], lat_t)):
        dec = _tiled_decode2d(model, z[:, :, start:end], t)
        parts.append(dec if n == 0 else dec[:, :, 1:])
    return torch.cat(parts, dim=2)
