"""config.json of a vdit model directory: dataclasses, validation, load and save.

Key names, defaults and rules follow docs/model-format.md; the C loader applies the same
rules, so a config this module accepts is one the engine accepts.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import List, Optional


class ConfigError(ValueError):
    pass


@dataclass
class VideoConfig:
    frames: int
    height: int
    width: int
    fps: float


@dataclass
class DecoderConfig:
    type: str = "identity"
    channels: int = 3


@dataclass
class TextEncoderConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_kv: int
    d_ff: int
    rel_buckets: int
    rel_max_distance: int
    max_tokens: int
    eps: float


@dataclass
class DiTConfig:
    hidden: int
    depth: int
    heads: int
    head_dim: int
    patch: List[int]
    in_channels: int
    ffn_hidden: int
    freq_dim: int
    rope_theta: float
    rope_scale: List[float]
    eps: float
    abs_pos: str = "none"

    @property
    def patch_size(self):
        return self.patch[0] * self.patch[1] * self.patch[2]


@dataclass
class SamplerConfig:
    type: str
    prediction: str
    steps: int
    guidance: float
    shift: float = 1.0
    train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"


@dataclass
class AttentionConfig:
    mode: str = "full"
    tile_k: int = 1
    plan: Optional[List[int]] = None
    block: int = 64
    sparsity: float = 0.8
    warmup: float = 0.2
    search_steps: List[float] = field(default_factory=lambda: [0.2, 0.6])


@dataclass
class ModelConfig:
    name: str
    video: VideoConfig
    decoder: DecoderConfig
    text_encoder: TextEncoderConfig
    dit: DiTConfig
    sampler: SamplerConfig
    attention: AttentionConfig
    format: str = "vdit"
    version: int = 1

    def latent_frames(self, frames=None):
        """Latent frames T for a video frame count (identity decoder: T = frames)."""
        return self.video.frames if frames is None else frames

    def latent_shape(self, frames=None):
        return (self.latent_frames(frames), self.video.height, self.video.width,
                self.dit.in_channels)

    def to_dict(self):
        att = asdict(self.attention)
        if att["plan"] is None:
            del att["plan"]
        return {
            "format": self.format,
            "version": self.version,
            "name": self.name,
            "video": asdict(self.video),
            "decoder": asdict(self.decoder),
            "text_encoder": asdict(self.text_encoder),
            "dit": asdict(self.dit),
            "sampler": asdict(self.sampler),
            "attention": att,
        }


def _fail(key, value, why):
    raise ConfigError(f"config key '{key}' = {value!r}: {why}")


def _section(d, key, cls, required):
    if key not in d:
        _fail(key, None, "missing")
    sub = d[key]
    if not isinstance(sub, dict):
        _fail(key, sub, "must be an object")
    kwargs = {}
    for name, typ in required.items():
        if name in sub:
            v = sub[name]
            if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
                _fail(f"{key}.{name}", v, "must be an integer")
            if typ is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
                _fail(f"{key}.{name}", v, "must be a number")
            if typ is str and not isinstance(v, str):
                _fail(f"{key}.{name}", v, "must be a string")
            if typ is list and not isinstance(v, list):
                _fail(f"{key}.{name}", v, "must be an array")
            kwargs[name] = float(v) if typ is float else v
    try:
        return cls(**kwargs)
    except TypeError as e:
        missing = [n for n in required if n not in sub]
        _fail(f"{key}.{missing[0] if missing else '?'}", None, f"missing ({e})")


def from_dict(d):
    if d.get("format") != "vdit":
        _fail("format", d.get("format"), "must be \"vdit\"")
    if d.get("version") != 1:
        _fail("version", d.get("version"), "must be 1")
    name = d.get("name", "")
    if not isinstance(name, str):
        _fail("name", name, "must be a string")
    video = _section(d, "video", VideoConfig,
                     {"frames": int, "height": int, "width": int, "fps": float})
    decoder = _section(d, "decoder", DecoderConfig, {"type": str, "channels": int})
    text = _section(d, "text_encoder", TextEncoderConfig, {
        "vocab_size": int, "d_model": int, "n_layers": int, "n_heads": int, "d_kv": int,
        "d_ff": int, "rel_buckets": int, "rel_max_distance": int, "max_tokens": int,
        "eps": float})
    dit = _section(d, "dit", DiTConfig, {
        "hidden": int, "depth": int, "heads": int, "head_dim": int, "patch": list,
        "in_channels": int, "ffn_hidden": int, "freq_dim": int, "rope_theta": float,
        "rope_scale": list, "eps": float, "abs_pos": str})
    sampler = _section(d, "sampler", SamplerConfig, {
        "type": str, "prediction": str, "steps": int, "guidance": float, "shift": float,
        "train_timesteps": int, "beta_start": float, "beta_end": float,
        "beta_schedule": str})
    attention = _section(d, "attention", AttentionConfig, {
        "mode": str, "tile_k": int, "plan": list, "block": int, "sparsity": float,
        "warmup": float, "search_steps": list})
    cfg = ModelConfig(name=name, video=video, decoder=decoder, text_encoder=text, dit=dit,
                      sampler=sampler, attention=attention)
    validate(cfg)
    return cfg


def validate(cfg):
    v, t, m, s, a = cfg.video, cfg.text_encoder, cfg.dit, cfg.sampler, cfg.attention
    if not (isinstance(m.patch, list) and len(m.patch) == 3
            and all(isinstance(p, int) and p >= 1 for p in m.patch)):
        _fail("dit.patch", m.patch, "must be three integers >= 1")
    if not (isinstance(m.rope_scale, list) and len(m.rope_scale) == 3
            and all(isinstance(r, (int, float)) and r > 0 for r in m.rope_scale)):
        _fail("dit.rope_scale", m.rope_scale, "must be three numbers > 0")
    m.rope_scale = [float(r) for r in m.rope_scale]
    if v.frames < 1:
        _fail("video.frames", v.frames, "must be >= 1")
    if v.height < 1 or v.height % m.patch[1]:
        _fail("video.height", v.height, f"must be a positive multiple of patch {m.patch[1]}")
    if v.width < 1 or v.width % m.patch[2]:
        _fail("video.width", v.width, f"must be a positive multiple of patch {m.patch[2]}")
    if not v.fps > 0:
        _fail("video.fps", v.fps, "must be > 0")
    if cfg.decoder.type != "identity":
        _fail("decoder.type", cfg.decoder.type, "unknown decoder")
    if cfg.decoder.channels != 3:
        _fail("decoder.channels", cfg.decoder.channels, "identity decoder has 3 channels")
    if m.in_channels != cfg.decoder.channels:
        _fail("dit.in_channels", m.in_channels, "must equal the decoder's latent channels")
    if cfg.latent_frames() % m.patch[0]:
        _fail("video.frames", v.frames, f"latent frames not divisible by patch {m.patch[0]}")
    for key in ("vocab_size", "d_model", "n_layers", "n_heads", "d_kv", "d_ff",
                "rel_buckets", "rel_max_distance", "max_tokens"):
        if getattr(t, key) < 1:
            _fail(f"text_encoder.{key}", getattr(t, key), "must be >= 1")
    if t.rel_buckets < 4:
        _fail("text_encoder.rel_buckets", t.rel_buckets, "must be >= 4")
    if t.rel_max_distance <= t.rel_buckets // 4:
        _fail("text_encoder.rel_max_distance", t.rel_max_distance,
              "must exceed rel_buckets / 4 (the exact range)")
    if t.max_tokens < 2:
        _fail("text_encoder.max_tokens", t.max_tokens, "must be >= 2")
    if not t.eps > 0:
        _fail("text_encoder.eps", t.eps, "must be > 0")
    for key in ("hidden", "depth", "heads", "head_dim", "ffn_hidden", "freq_dim"):
        if getattr(m, key) < 1:
            _fail(f"dit.{key}", getattr(m, key), "must be >= 1")
    if m.heads * m.head_dim != m.hidden:
        _fail("dit.head_dim", m.head_dim, f"heads * head_dim must equal hidden {m.hidden}")
    if m.head_dim % 6:
        _fail("dit.head_dim", m.head_dim, "must be divisible by 6")
    if m.freq_dim % 2:
        _fail("dit.freq_dim", m.freq_dim, "must be even")
    if m.abs_pos not in ("none", "sincos"):
        _fail("dit.abs_pos", m.abs_pos, "must be \"none\" or \"sincos\"")
    if not m.rope_theta > 0:
        _fail("dit.rope_theta", m.rope_theta, "must be > 0")
    if not m.eps > 0:
        _fail("dit.eps", m.eps, "must be > 0")
    if s.type not in ("flow_euler", "ddim", "euler_ancestral"):
        _fail("sampler.type", s.type, "unknown sampler")
    if s.type == "flow_euler" and s.prediction != "flow":
        _fail("sampler.prediction", s.prediction, "flow_euler needs \"flow\"")
    if s.type != "flow_euler" and s.prediction not in ("epsilon", "v"):
        _fail("sampler.prediction", s.prediction, f"{s.type} needs \"epsilon\" or \"v\"")
    if s.steps < 1:
        _fail("sampler.steps", s.steps, "must be >= 1")
    if not s.shift > 0:
        _fail("sampler.shift", s.shift, "must be > 0")
    if s.train_timesteps < 2:
        _fail("sampler.train_timesteps", s.train_timesteps, "must be >= 2")
    if not 0 < s.beta_start <= s.beta_end < 1:
        _fail("sampler.beta_end", s.beta_end, "need 0 < beta_start <= beta_end < 1")
    if s.beta_schedule not in ("linear", "scaled_linear"):
        _fail("sampler.beta_schedule", s.beta_schedule, "must be linear or scaled_linear")
    if a.mode not in ("full", "tile", "adaptive"):
        _fail("attention.mode", a.mode, "must be full, tile or adaptive")
    if a.tile_k < 0:
        _fail("attention.tile_k", a.tile_k, "must be >= 0")
    if a.plan is not None:
        if len(a.plan) != m.depth or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in a.plan):
            _fail("attention.plan", a.plan, f"must hold {m.depth} integers >= 0")
    if a.block < 1:
        _fail("attention.block", a.block, "must be >= 1")
    if not 0 <= a.sparsity < 1:
        _fail("attention.sparsity", a.sparsity, "must be in [0, 1)")
    if not 0 <= a.warmup <= 1:
        _fail("attention.warmup", a.warmup, "must be in [0, 1]")
    if not all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in a.search_steps):
        _fail("attention.search_steps", a.search_steps, "must be fractions in [0, 1]")


def load(path):
    with open(path, "r", encoding="utf-8") as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from e
    try:
        return from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def _format(value, indent):
    """JSON with one key per line and arrays on one line."""
    if isinstance(value, dict):
        pad = "  " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_format(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    return json.dumps(value)


def dumps(cfg):
    validate(cfg)
    return _format(cfg.to_dict(), 0) + "\n"


def save(cfg, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumps(cfg))
