"""GPU suite: capture cost, skipping speed-ups against their FLOPs prediction, and peak memory.

One script for a lent GPU (finishes in a few minutes on one H200; budget 8 min):

* model: LLaVA-1.5-7B-shaped, random weights: Llama decoder hidden 4096, 32 layers, 32 heads,
  intermediate 11008, vocab 32000; CLIP ViT-L/14 at 336 px (24 layers, hidden 1024), so
  576 vision tokens, and 60 text tokens; bfloat16, sdpa attention; batch 1 and 8;
* rows per batch size:
  - ``capture / plain``: one prefill under ``capture_statistics`` (distances, proximal
    counts, CKA, attention ratio) against the plain prefill;
  - ``late entry L=8``, ``early exit L=24``, ``freeze 9-24`` (16 layers): measured speed-up
    over the full model against the FLOPs prediction of ``skipit.empirical.flops``, for the
    prefill (one forward, LM head on the last position, as ``generate`` does; the vision
    tower included) and for decoding (per generated token:
    ``(t(generate N+1 tokens) - t(generate 1 token)) / N``);
  - peak memory of the prefill (``torch.cuda.max_memory_allocated``), absolute and above
    the weights;
* timing: CUDA events around each call after one warm-up call of every setting; the
  settings are interleaved, and each figure is the median of ``--repeats`` (>= 5) runs.

Then a correctness check of models spread by accelerate (``device_map_check``): the tiny
model with its decoder layers alternating between ``cuda:0`` and the CPU (``dispatch_model``
with the CPU as main device, so hidden states cross devices at every layer); on a CPU-only
machine the layers alternate between CPU offload and disk offload instead. The statistics of
``capture_statistics`` and the logits of every skipping mode are compared with the same model
on one device (largest relative difference; float32).

``--tiny`` runs the same code on the CPU at a small size (hidden 64, still 32 layers, 64
vision + 20 text tokens), timed with ``time.perf_counter`` and no memory figure; a test
runs it so the script cannot rot.

    python benchmarks/gpu_suite.py                    # on a GPU
    python benchmarks/gpu_suite.py --tiny --repeats 1 # on a CPU, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time

SIZES = {
    "7b": dict(hidden=4096, layers=32, heads=32, intermediate=11008, vocab=32000, text_tokens=60,
               vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=336, patch_size=14)),
    "tiny": dict(hidden=64, layers=32, heads=4, intermediate=128, vocab=512, text_tokens=20,
                 vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=16, patch_size=2)),
}
LATE_ENTRY, EARLY_EXIT = 8, 24
FREEZE = list(range(9, 25))  # 16 layers in the middle of 32
SETTINGS = ("full", f"late entry L={LATE_ENTRY}", f"early exit L={EARLY_EXIT}", "freeze 9-24")


def build(size, device, dtype, batch_size, seed=0):
    """The model (random weights, eval mode) and a batch of ``batch_size`` prompts of one layout."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    s = SIZES[size]
    text = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                       num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                       num_key_value_heads=s["heads"], max_position_embeddings=4096, pad_token_id=0,
                       bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(**s["vision"], projection_dim=s["vision"]["hidden_size"])
    image_token = s["vocab"] - 1
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=image_token,
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         image_seq_length=(s["vision"]["image_size"] // s["vision"]["patch_size"]) ** 2)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are created in bf16 on the device: no fp32 copy of 7B
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    return model, make_batch(model, batch_size, seed)


def make_batch(model, batch_size, seed=0):
    import torch

    c = model.config
    vision_tokens = c.image_seq_length
    text = SIZES_BY_HIDDEN[c.text_config.hidden_size]["text_tokens"]
    gen = torch.Generator().manual_seed(seed)
    before = text // 3
    ids = torch.randint(3, c.text_config.vocab_size - 8, (batch_size, text), generator=gen)
    ids[:, 0] = 1
    image = torch.full((batch_size, vision_tokens), c.image_token_index)
    ids = torch.cat([ids[:, :before], image, ids[:, before:]], dim=1)
    side = c.vision_config.image_size
    device = next(model.parameters()).device
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": torch.randn(batch_size, 3, side, side, generator=gen).to(device, model.dtype)}


SIZES_BY_HIDDEN = {s["hidden"]: s for s in SIZES.values()}


FLOPS_LAYOUT = {SETTINGS[0]: ("full", None), SETTINGS[1]: ("late-entry", LATE_ENTRY),
                SETTINGS[2]: ("early-exit", EARLY_EXIT), SETTINGS[3]: ("freeze", FREEZE)}


def contexts(model):
    """Setting name -> a callable returning its context manager (the mode registry's)."""
    from skipit.empirical.modes import skip_context

    return {name: (lambda mode=mode, layer=layer: skip_context(model, mode, layer))
            for name, (mode, layer) in FLOPS_LAYOUT.items()}


def predicted_flops(model, batch_size, new_tokens):
    """Per setting: prefill FLOPs (vision tower + decoder + LM head on 1 position) and the mean
    FLOPs of one decode step over ``new_tokens`` steps (``skipit.empirical.flops``)."""
    from skipit.empirical.flops import (
        DecoderShape, VisionShape, generation_flops, keys_per_layer, prefill_flops, tokens_per_layer, vision_flops,
    )

    shape = DecoderShape.from_config(model.config)
    vision = model.config.image_seq_length
    text = SIZES_BY_HIDDEN[shape.hidden]["text_tokens"]
    tower = vision_flops(VisionShape.from_llava_config(model.config), images=batch_size)
    out = {}
    for name, (mode, layer) in FLOPS_LAYOUT.items():
        tokens = tokens_per_layer(shape.num_layers, text, vision, mode, layer)
        keys = keys_per_layer(shape.num_layers, text, vision, mode, layer)
        steps = generation_flops(shape, tokens, new_tokens + 1, batch=batch_size, keys=keys)["per_token"]
        out[name] = {"prefill": tower + prefill_flops(shape, tokens, logits_positions=1, batch=batch_size, keys=keys),
                     "decode": sum(steps) / len(steps)}
    return out


class Clock:
    """Seconds of a call: CUDA events on a GPU (after draining the queue), perf_counter on a CPU."""

    def __init__(self, device):
        import torch

        self.cuda = str(device).startswith("cuda")
        self.torch = torch

    def __call__(self, fn):
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        torch = self.torch
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return begin.elapsed_time(end) / 1000.0


def peak_memory(model, batch, context, device):
    """``(peak GiB, GiB above what was allocated before)`` of one prefill; None off CUDA."""
    import torch

    if not str(device).startswith("cuda"):
        return None, None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), context():
        model(**batch, logits_to_keep=1)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return peak / 2 ** 30, (peak - base) / 2 ** 30


def measure(model, batch, device, repeats, new_tokens):
    """Median seconds of every setting (prefill, generate 1 and N+1 tokens) and of the capture."""
    import torch

    from skipit.empirical import capture_statistics

    clock = Clock(device)
    ctx = contexts(model)
    gen = dict(do_sample=False, pad_token_id=0)

    def prefill(make):
        with make():
            model(**batch, logits_to_keep=1)

    def generate(make, n):
        with make():
            model.generate(**batch, max_new_tokens=n, min_new_tokens=n, **gen)

    def capture():
        with capture_statistics(model):
            model(**batch, logits_to_keep=1)

    runs = {name: {"prefill": [], "generate_1": [], "generate_n": []} for name in ctx}
    captured = []
    with torch.inference_mode():
        for name, make in ctx.items():  # warm-up: every path once
            prefill(make)
            generate(make, 1)
            generate(make, new_tokens + 1)
        capture()
        for _ in range(repeats):
            captured.append(clock(capture))
            for name, make in ctx.items():
                runs[name]["prefill"].append(clock(lambda: prefill(make)))
                runs[name]["generate_1"].append(clock(lambda: generate(make, 1)))
                runs[name]["generate_n"].append(clock(lambda: generate(make, new_tokens + 1)))
    medians = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in runs.items()}
    return medians, statistics.median(captured)


def _split_map(model, device):
    """A device map: decoder layers alternate between the main device (the CPU) and a second
    place, ``0`` (cuda:0) on a GPU machine, ``"disk"`` (offload) otherwise; every other module
    on the way from the root to the layers stays on the CPU."""
    from skipit.empirical.adapters import get_adapter

    names = {id(module): name for name, module in model.named_modules()}
    layer_names = [names[id(layer)] for layer in get_adapter(model).decoder_layers(model)]
    mapping, prefix, module = {}, "", model
    for part in layer_names[0].rsplit(".", 1)[0].split("."):  # e.g. model . language_model . layers
        mapping.update({prefix + name: "cpu" for name, _ in module.named_children() if name != part})
        prefix, module = f"{prefix}{part}.", getattr(module, part)
    other = 0 if str(device).startswith("cuda") else "disk"
    mapping.update({name: other if i % 2 else "cpu" for i, name in enumerate(layer_names)})
    return mapping


def device_map_check(device, seed=0):
    """Largest relative difference between the tiny model on one device and the same weights
    spread by accelerate (see the module docstring), for the statistics and each skipping mode."""
    import copy
    import tempfile

    import numpy as np
    import torch
    from accelerate import dispatch_model

    from skipit.empirical import capture_statistics

    reference, _ = build("tiny", "cpu", torch.float32, batch_size=1, seed=seed)
    batch = make_batch(reference, 2, seed)
    spread = copy.deepcopy(reference)
    mapping = _split_map(spread, device)
    out = {"placement": "layers alternate cuda:0 / cpu (main device cpu)" if str(device).startswith("cuda")
           else "layers alternate cpu offload / disk offload"}
    with tempfile.TemporaryDirectory() as folder:
        spread = dispatch_model(spread, mapping, main_device=torch.device("cpu"), offload_dir=folder)

        def relative(a, b):
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))

        with torch.inference_mode():
            stats = []
            for model in (reference, spread):
                with capture_statistics(model) as cap:
                    model(**batch)
                stats.append(cap.statistics.to_dict())
            out["statistics"] = max(
                relative(stats[0]["groups"][g]["sum"], stats[1]["groups"][g]["sum"]) for g in stats[0]["groups"])
            out["attention"] = relative(stats[0]["attention"]["head_sum"], stats[1]["attention"]["head_sum"])
            for name, make in contexts(reference).items():
                spread_make = contexts(spread)[name]
                with make():
                    want = reference(**batch).logits
                with spread_make():
                    got = spread(**batch).logits
                out[name] = relative(want.cpu(), got.cpu())
    return out


def run_suite(size="7b", device="cuda", batch_sizes=(1, 8), repeats=5, new_tokens=16):
    """All figures, as a list of row dicts (see the module docstring)."""
    import torch

    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model, _ = build(size, device, dtype, batch_size=1)
    settings = contexts(model)
    rows = []
    for batch_size in batch_sizes:
        batch = make_batch(model, batch_size)
        medians, captured = measure(model, batch, device, repeats, new_tokens)
        flops = predicted_flops(model, batch_size, new_tokens)
        full = medians[SETTINGS[0]]
        plain = full["prefill"]
        peak, above = peak_memory(model, batch, contextlib.nullcontext, device)
        rows.append({"batch": batch_size, "setting": "capture / plain", "prefill_s": captured,
                     "prefill_measured": captured / plain, "prefill_predicted": None,
                     "decode_s": None, "decode_measured": None, "decode_predicted": None,
                     "peak_gib": peak, "peak_above_weights_gib": above})
        for name in SETTINGS:
            m = medians[name]
            decode = (m["generate_n"] - m["generate_1"]) / new_tokens
            full_decode = (full["generate_n"] - full["generate_1"]) / new_tokens
            peak, above = peak_memory(model, batch, settings[name], device)
            rows.append({
                "batch": batch_size, "setting": name, "prefill_s": m["prefill"],
                "prefill_measured": plain / m["prefill"],
                "prefill_predicted": flops[SETTINGS[0]]["prefill"] / flops[name]["prefill"],
                "decode_s": decode,
                "decode_measured": full_decode / decode if decode > 0 else math.nan,
                "decode_predicted": flops[SETTINGS[0]]["decode"] / flops[name]["decode"],
                "peak_gib": peak, "peak_above_weights_gib": above,
            })
    return rows


def _f(value, spec, scale=1.0):
    """``value * scale`` formatted with ``spec`` (e.g. ``"8.3f"``), or ``-`` as wide when there is none."""
    width = int(spec.split(".")[0])
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-".rjust(width)
    return format(value * scale, spec)


def format_rows(rows):
    head = (f"{'B':>2} {'setting':<17} {'prefill ms':>10} {'measured':>8} {'predicted':>9} "
            f"{'decode ms/tok':>13} {'measured':>8} {'predicted':>9} {'peak GiB':>8} {'above w.':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['batch']:>2} {r['setting']:<17} {_f(r['prefill_s'], '10.2f', 1000)} "
            f"{_f(r['prefill_measured'], '8.3f')} {_f(r['prefill_predicted'], '9.3f')} "
            f"{_f(r['decode_s'], '13.3f', 1000)} {_f(r['decode_measured'], '8.3f')} "
            f"{_f(r['decode_predicted'], '9.3f')} {_f(r['peak_gib'], '8.2f')} {_f(r['peak_above_weights_gib'], '8.2f')}")
    lines.append("capture / plain: time ratio of the prefill (target <= 1.15); other rows: speed-up over the "
                 "full model, measured vs FLOPs-predicted")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the same code at a small size on the CPU")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5, help="runs per figure, median taken (default 5)")
    p.add_argument("--new-tokens", type=int, default=16, help="decode steps timed per generate (default 16)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.new_tokens < 1 or min(args.batch_sizes) < 1:
        p.error("--repeats, --new-tokens and --batch-sizes must be >= 1")

    import torch

    device = args.device or ("cpu" if args.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {device}: no CUDA device here; run with --tiny (CPU) or on a GPU")
    size = "tiny" if args.tiny else "7b"
    started = time.perf_counter()
    rows = run_suite(size, device, tuple(args.batch_sizes), args.repeats, args.new_tokens)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    s = SIZES[size]
    print(f"# gpu_suite: LLaVA-1.5-7B shape ({size}): {s['layers']} layers, hidden {s['hidden']}, "
          f"{(s['vision']['image_size'] // s['vision']['patch_size']) ** 2} vision + {s['text_tokens']} text tokens, "
          f"{'bfloat16' if device.startswith('cuda') else 'float32'}, sdpa, {name}, torch {torch.__version__}, "
          f"median of {args.repeats}, {args.new_tokens} decode steps")
    print(format_rows(rows))
    check = device_map_check(device)
    print(f"# device_map check ({check.pop('placement')}): largest relative difference to one device")
    print("  " + ", ".join(f"{key} {value:.1e}" for key, value in check.items()))
    print(f"# total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "size": size, "args": vars(args), "rows": rows, "device_map_check": check},
                      fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
