"""Late entry / early exit / freeze: FLOPs-predicted vs measured speed-up, side by side in one run.

A LLaVA-architecture model with random weights: CLIP tower at 336 px / patch 14 (576
vision tokens), ~60 text tokens, a 32-layer Llama decoder (hidden 768 by default).
Measures prefill (one forward, LM head on the last position, as ``generate`` does) and
end-to-end ``generate`` (greedy, fixed number of new tokens), full vs late entry at L=8
vs early exit at L=24 vs freeze of the top half of the layers (17-32: 16 of 32; the
vision tokens keep their layer-16 state, the text attends to their keys/values there),
interleaved so they share the machine's load; reports the median of ``--repeats`` runs
and the analytic prediction of ``skipit.empirical.flops``. Freeze removes vision compute
from the prefill only (the decode steps still attend to every vision key), so its
generate speed-up is the smaller one.

    python benchmarks/bench_skipping.py [--hidden 768] [--repeats 5] [--new-tokens 16] [--device cpu]
        [--freeze 17-32]

On a GPU (``--device cuda --hidden 4096``) the same at a real size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def build(hidden, layers, text_tokens, device, dtype):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    heads = max(1, hidden // 64)
    text = LlamaConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=int(hidden * 8 / 3) // 64 * 64,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=2048, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    vision = CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                              num_attention_heads=4, image_size=336, patch_size=14)
    config = LlavaConfig(text_config=text, vision_config=vision, image_token_index=31999,
                         vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).to(device=device, dtype=dtype).eval()
    gen = torch.Generator().manual_seed(0)
    n_img = (336 // 14) ** 2
    before = torch.randint(3, 30000, (text_tokens // 3,), generator=gen)
    after = torch.randint(3, 30000, (text_tokens - text_tokens // 3 - 1,), generator=gen)
    ids = torch.cat([torch.tensor([1]), before, torch.full((n_img,), 31999), after])[None]
    batch = {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": torch.randn(1, 3, 336, 336, generator=gen).to(device=device, dtype=dtype),
    }
    return model, batch, n_img, ids.shape[1] - n_img


def predictions(model, text, vision, new_tokens, settings):
    from skipit.empirical.flops import (
        DecoderShape, VisionShape, generation_flops, keys_per_layer, prefill_flops, tokens_per_layer,
        vision_flops,
    )

    shape = DecoderShape.from_config(model.config)
    vis = vision_flops(VisionShape.from_llava_config(model.config))
    out = {}
    for name, mode, layer in settings:
        tokens = tokens_per_layer(shape.num_layers, text, vision, mode, layer)
        keys = keys_per_layer(shape.num_layers, text, vision, mode, layer)
        out[name] = {
            "prefill": vis + prefill_flops(shape, tokens, logits_positions=1, keys=keys),
            "generate": vis + generation_flops(shape, tokens, new_tokens, keys=keys)["total"],
        }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--text-tokens", type=int, default=60)
    p.add_argument("--late", type=int, default=8)
    p.add_argument("--early", type=int, default=24)
    p.add_argument("--freeze", default="17-32", help="frozen layers (default: 17-32, the top half)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)

    import torch

    from skipit.empirical.evaluate import parse_layer_grid
    from skipit.empirical.modes import skip_context

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    model, batch, vision, text = build(args.hidden, args.layers, args.text_tokens, args.device, dtype)
    frozen = parse_layer_grid(args.freeze, args.layers)
    settings = [("full", "full", None), (f"late-entry L={args.late}", "late-entry", args.late),
                (f"early-exit L={args.early}", "early-exit", args.early),
                (f"freeze {args.freeze}", "freeze", frozen)]
    contexts = {name: (lambda mode=mode, layer=layer: skip_context(model, mode, layer))
                for name, mode, layer in settings}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(fn):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        return time.perf_counter() - t0, time.process_time() - c0

    gen_kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    times = {name: {"prefill": [], "generate": []} for name, _, _ in settings}
    cpu = {name: {"prefill": [], "generate": []} for name, _, _ in settings}
    with torch.inference_mode():
        for name, _, _ in settings:  # warm-up
            with contexts[name]():
                model(**batch, logits_to_keep=1)
        for _ in range(args.repeats):
            for name, _, _ in settings:
                with contexts[name]():
                    wall, proc = timed(lambda: model(**batch, logits_to_keep=1))
                times[name]["prefill"].append(wall)
                cpu[name]["prefill"].append(proc)
            for name, _, _ in settings:
                with contexts[name]():
                    wall, proc = timed(lambda: model.generate(**batch, **gen_kw))
                times[name]["generate"].append(wall)
                cpu[name]["generate"].append(proc)

    pred = predictions(model, text, vision, args.new_tokens, settings)
    rows = []
    full = settings[0][0]
    for name, _, _ in settings:
        row = {"setting": name}
        for kind in ("prefill", "generate"):
            med = statistics.median(times[name][kind])
            base = statistics.median(times[full][kind])
            predicted = pred[full][kind] / pred[name][kind]
            measured = base / med
            cpu_speedup = statistics.median(cpu[full][kind]) / statistics.median(cpu[name][kind])
            row[kind] = {
                "median_s": med, "measured_speedup": measured, "predicted_speedup": predicted,
                "ratio": measured / predicted, "cpu_median_s": statistics.median(cpu[name][kind]),
                "cpu_speedup": cpu_speedup, "cpu_ratio": cpu_speedup / predicted,
                "gain_ratio": (measured - 1) / (predicted - 1) if predicted > 1 else None,
                "gflops": pred[name][kind] / 1e9,
            }
        rows.append(row)
    device = args.device if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"# bench_skipping: LLaVA arch, {args.layers} layers, hidden {args.hidden}, {vision} vision + "
          f"{text} text tokens, {args.new_tokens} new tokens, {device}, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats}")
    print("speed-up = full / skipped; wall: elapsed time; cpu: this process's CPU time (robust to other "
          "load when single-threaded)")
    print(f"{'setting':<18} {'kind':<9} {'wall s':>7} {'cpu s':>7} {'GFLOPs':>7} {'predicted':>9} "
          f"{'wall':>6} {'cpu':>6} {'wall/pred':>9} {'cpu/pred':>8}")
    for row in rows:
        for kind in ("prefill", "generate"):
            r = row[kind]
            print(f"{row['setting']:<18} {kind:<9} {r['median_s']:>7.3f} {r['cpu_median_s']:>7.3f} "
                  f"{r['gflops']:>7.1f} {r['predicted_speedup']:>9.3f} {r['measured_speedup']:>6.3f} "
                  f"{r['cpu_speedup']:>6.3f} {r['ratio']:>9.2f} {r['cpu_ratio']:>8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "device": device, "rows": rows,
                       "times": times, "cpu_times": cpu}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()
