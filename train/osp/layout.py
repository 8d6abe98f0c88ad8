"""The published Open-Sora-Plan v1.2 layout: config.json contents and the exact tensor
names and shapes of the transformer (diffusion_pytorch_model.safetensors, all F32) and
of the mT5 text encoder (Hugging Face MT5 names), at full size or shrunken.

Sources: OpenSoraT2V.__init__ / BasicTransformerBlock (v1.2.0) for the transformer's
parameters (norms have no affine, so no tensors; pos_embed's sin-cos buffers are not
persistent, so not saved); transformers' MT5 modules for the text encoder. The
interpolation scales (t 1.0, h 1.5, w 2.0 at 720p) are those recorded in
../shared/OPEN-SORA-PLAN-1.2.md from the published configs; a null there means the
model computes them from sample_size (OspConfig.interpolation_scales)."""

FULL_TRANSFORMER = {
    "num_layers": 32, "num_attention_heads": 24, "attention_head_dim": 96,
    "in_channels": 4, "out_channels": 4, "caption_channels": 4096,
    "cross_attention_dim": 2304, "patch_size": 2, "patch_size_t": 1,
    "sample_size": [90, 160], "sample_size_t": 8, "norm_eps": 1e-6,
    "interpolation_scale_t": 1.0, "interpolation_scale_h": 1.5, "interpolation_scale_w": 2.0,
}

# Shrunken: every structural feature kept (2 blocks, 3 RoPE chunks of even width,
# patch 2, 4 channels, caption width ≠ hidden width, non-unit interpolation scales).
TINY_TRANSFORMER = dict(FULL_TRANSFORMER, num_layers=2, num_attention_heads=2,
                        attention_head_dim=12, caption_channels=16, cross_attention_dim=24,
                        sample_size=[8, 12], sample_size_t=3)

FULL_MT5 = {"vocab_size": 250112, "d_model": 4096, "d_kv": 64, "d_ff": 10240,
            "num_layers": 24, "num_heads": 64, "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6}

TINY_MT5 = dict(FULL_MT5, vocab_size=160, d_model=16, d_kv=6, d_ff=40, num_layers=2,
                num_heads=3, relative_attention_num_buckets=8,
                relative_attention_max_distance=20)


def transformer_config_json(t):
    """config.json as diffusers' ConfigMixin writes it for OpenSoraT2V."""
    return {
        "_class_name": "OpenSoraT2V", "_diffusers_version": "0.28.0",
        "activation_fn": "gelu-approximate", "attention_bias": True,
        "attention_head_dim": t["attention_head_dim"], "attention_mode": "xformers",
        "attention_type": "default", "caption_channels": t["caption_channels"],
        "cross_attention_dim": t["cross_attention_dim"], "double_self_attention": False,
        "downsampler": None, "dropout": 0.0, "in_channels": t["in_channels"],
        "interpolation_scale_h": t["interpolation_scale_h"],
        "interpolation_scale_t": t["interpolation_scale_t"],
        "interpolation_scale_w": t["interpolation_scale_w"],
        "norm_elementwise_affine": False, "norm_eps": t["norm_eps"], "norm_num_groups": 32,
        "norm_type": "ada_norm_single", "num_attention_heads": t["num_attention_heads"],
        "num_embeds_ada_norm": 1000, "num_layers": t["num_layers"], "num_vector_embeds": None,
        "only_cross_attention": False, "out_channels": t["out_channels"],
        "patch_size": t["patch_size"], "patch_size_t": t["patch_size_t"],
        "sample_size": t["sample_size"], "sample_size_t": t["sample_size_t"],
        "upcast_attention": False, "use_additional_conditions": None,
        "use_linear_projection": False, "use_rope": True, "use_stable_fp32": True,
    }


def mt5_config_json(m):
    return {
        "_name_or_path": "google/mt5-xxl", "architectures": ["MT5ForConditionalGeneration"],
        "d_ff": m["d_ff"], "d_kv": m["d_kv"], "d_model": m["d_model"],
        "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
        "layer_norm_epsilon": m["layer_norm_epsilon"], "model_type": "mt5",
        "num_decoder_layers": m["num_layers"], "num_heads": m["num_heads"],
        "num_layers": m["num_layers"], "pad_token_id": 0,
        "relative_attention_max_distance": m["relative_attention_max_distance"],
        "relative_attention_num_buckets": m["relative_attention_num_buckets"],
        "tie_word_embeddings": False, "tokenizer_class": "T5Tokenizer",
        "vocab_size": m["vocab_size"],
    }


def transformer_shapes(t):
    """{name: shape} of diffusion_pytorch_model.safetensors."""
    d = t["num_attention_heads"] * t["attention_head_dim"]
    c, p, pt = t["in_channels"], t["patch_size"], t["patch_size_t"]
    s = {
        "pos_embed.proj.weight": [d, c, p, p], "pos_embed.proj.bias": [d],
        "adaln_single.emb.timestep_embedder.linear_1.weight": [d, 256],
        "adaln_single.emb.timestep_embedder.linear_1.bias": [d],
        "adaln_single.emb.timestep_embedder.linear_2.weight": [d, d],
        "adaln_single.emb.timestep_embedder.linear_2.bias": [d],
        "adaln_single.linear.weight": [6 * d, d], "adaln_single.linear.bias": [6 * d],
        "caption_projection.linear_1.weight": [d, t["caption_channels"]],
        "caption_projection.linear_1.bias": [d],
        "caption_projection.linear_2.weight": [d, d], "caption_projection.linear_2.bias": [d],
        "scale_shift_table": [2, d],
        "proj_out.weight": [pt * p * p * t["out_channels"], d],
        "proj_out.bias": [pt * p * p * t["out_channels"]],
    }
    for i in range(t["num_layers"]):
        b = f"transformer_blocks.{i}."
        s[b + "scale_shift_table"] = [6, d]
        for a, kv in (("attn1", d), ("attn2", t["cross_attention_dim"])):
            s[f"{b}{a}.to_q.weight"] = [d, d]
            s[f"{b}{a}.to_q.bias"] = [d]
            for w in ("to_k", "to_v"):
                s[f"{b}{a}.{w}.weight"] = [d, kv]
                s[f"{b}{a}.{w}.bias"] = [d]
            s[f"{b}{a}.to_out.0.weight"] = [d, d]
            s[f"{b}{a}.to_out.0.bias"] = [d]
        s[b + "ff.net.0.proj.weight"] = [4 * d, d]
        s[b + "ff.net.0.proj.bias"] = [4 * d]
        s[b + "ff.net.2.weight"] = [d, 4 * d]
        s[b + "ff.net.2.bias"] = [d]
    return s


def mt5_encoder_shapes(m):
    """{name: shape} of the encoder half of an MT5 checkpoint (Hugging Face names)."""
    e, inner, g = m["d_model"], m["num_heads"] * m["d_kv"], m["d_ff"]
    s = {"shared.weight": [m["vocab_size"], e], "encoder.final_layer_norm.weight": [e]}
    for i in range(m["num_layers"]):
        b = f"encoder.block.{i}.layer."
        s[b + "0.layer_norm.weight"] = [e]
        for w in "qkv":
            s[f"{b}0.SelfAttention.{w}.weight"] = [inner, e]
        s[b + "0.SelfAttention.o.weight"] = [e, inner]
        if i == 0:
            s[b + "0.SelfAttention.relative_attention_bias.weight"] = \
                [m["relative_attention_num_buckets"], m["num_heads"]]
        s[b + "1.layer_norm.weight"] = [e]
        s[b + "1.DenseReluDense.wi_0.weight"] = [g, e]
        s[b + "1.DenseReluDense.wi_1.weight"] = [g, e]
        s[b + "1.DenseReluDense.wo.weight"] = [e, g]
    return s
