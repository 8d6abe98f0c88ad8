#!/usr/bin/env python3
"""Seeds for the fuzz targets, derived from the shipped models (nothing large committed).

make_seeds.py NAME MODELS_DIR OUT_DIR
  config:      each models/*/config.json as it is
  json:        the same, and each safetensors header, behind the selector byte the
               target reads first (0: whole file, 1: "header")
  tokenizer:   each models/*/tokenizer.model as it is
  writers:     per model and output (y4m, PNG; growing buffer, then one too small) a
               frame of the model's size (sides taken modulo 48 by the target) and frame
               rate, with a colour ramp for pixels
  safetensors: per model a small valid file (the header of its first tensors, offsets
               renumbered, and their data) and the header of the whole file with no data,
               each as the file (behind the selector byte 1) and as header text, NUL,
               data (selector 0: the target computes the length prefix)
"""
import json
import os
import struct
import sys


def header(path):
    f = open(path, 'rb')
    n = struct.unpack('<Q', f.read(8))[0]
    return f.read(n), f


def small_file(path, name_only=False, max_tensors=4, max_bytes=4096):
    raw, f = header(path)
    if name_only:
        f.close()
        return raw
    base = 8 + len(raw)
    h = json.loads(raw)
    out, data = {}, b''
    if '__metadata__' in h:
        out['__metadata__'] = h['__metadata__']
    for name, t in h.items():
        if name == '__metadata__':
            continue
        b, e = t['data_offsets']
        if e - b > max_bytes:
            continue
        f.seek(base + b)
        chunk = f.read(e - b)
        out[name] = dict(t, data_offsets=[len(data), len(data) + len(chunk)])
        data += chunk
        if len(out) >= max_tensors:
            break
    f.close()
    text = json.dumps(out).encode()
    return struct.pack('<Q', len(text)) + text + data, raw


def main():
    name, models, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    seeds = {}
    for model in sorted(os.listdir(models)):
        d = os.path.join(models, model)
        cfg = os.path.join(d, 'config.json')
        st = os.path.join(d, 'model.safetensors')
        if os.path.isfile(cfg) and name in ('config', 'json'):
            with open(cfg, 'rb') as f:
                text = f.read()
            seeds[model + '-config'] = text if name == 'config' else b'\0' + text
        if os.path.isfile(st) and name in ('safetensors', 'json'):
            small, raw = small_file(st)
            if name == 'safetensors':
                n = struct.unpack('<Q', small[:8])[0]
                seeds[model + '-small'] = b'\1' + small
                seeds[model + '-small-split'] = b'\0' + small[8:8 + n] + b'\0' + small[8 + n:]
                seeds[model + '-header-only'] = b'\1' + struct.pack('<Q', len(raw)) + raw
                seeds[model + '-header-split'] = b'\0' + raw
            else:
                seeds[model + '-header'] = b'\1' + raw
        tok = os.path.join(d, 'tokenizer.model')
        if os.path.isfile(tok) and name == 'tokenizer':
            with open(tok, 'rb') as f:
                seeds[model + '-tokenizer'] = f.read()
        if os.path.isfile(cfg) and name == 'writers':
            with open(cfg, 'rb') as f:
                video = json.load(f).get('video', {})
            w, h = video.get('width', 16), video.get('height', 16)
            fps = float(video.get('fps', 8.0))
            ramp = bytes(range(0, 256, 5)) * 4
            for mode, label in ((1, 'y4m'), (0, 'png'), (3, 'y4m-full'), (2, 'png-full')):
                head = bytes([mode, (w - 1) % 48, (h - 1) % 48, 0]) + struct.pack('<d', fps)
                head += struct.pack('<H', 100) + bytes([1])
                seeds['%s-%s' % (model, label)] = head + ramp
    for key, blob in seeds.items():
        with open(os.path.join(outdir, key), 'wb') as f:
            f.write(blob)


if __name__ == '__main__':
    main()
