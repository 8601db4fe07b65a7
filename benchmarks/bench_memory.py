"""Peak memory of certify's forward as it grows with batch size and sequence length.

Model: the LLaVA architecture of ``bench_capture.py`` (random weights, Llama decoder hidden
``--hidden`` = 1024, 16 heads, intermediate 2816, vocab 32000; a 1-layer CLIP tower with
patch 2, so an image of ``2 s`` pixels gives ``s^2`` vision tokens), ``--text`` = 60 text
tokens, float32, on the CPU. The decoder has ``--layers`` = 4 layers by default: the
capture keeps at most two hidden states whatever the depth, so the peak above the weights
does not grow with the number of layers (``--layers 32`` shows it at bench_capture's depth,
much slower).

Memory is read as in ``bench_capture.py`` (whose sampler this script imports): live CPU
bytes malloc'ed and not freed (glibc ``mallinfo2``), sampled after every tensor operation
of the forward; a figure is the peak minus the bytes before the forward (the weights are
not counted). RSS would not do: freed pages stay mapped.

Four forwards per (batch, sequence):

* ``plain``: ``model(**batch)``, logits at every position (``B x S x vocab`` floats);
* ``certify``: the same under ``capture_statistics`` with everything on (distances,
  proximal counts, CKA, attention ratio): what ``skipit certify`` runs per batch;
* ``plain, 1 logit`` / ``certify, 1 logit``: with ``logits_to_keep=1`` (the statistics
  never read the logits).

Run: ``.venv/bin/python benchmarks/bench_memory.py`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_capture import peak_extra_bytes  # noqa: E402  (one memory sampler for the benchmarks)

MIB = 2.0 ** 20


def build(hidden, layers, vocab, text_tokens, side, batch_size):
    """The model with ``side^2`` vision tokens per image and a batch of ``batch_size`` prompts."""
    import transformers as tf

    torch.manual_seed(0)
    text = dict(model_type="llama", vocab_size=vocab, hidden_size=hidden, intermediate_size=int(2.75 * hidden) // 64 * 64,
                num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                max_position_embeddings=8192, pad_token_id=0)
    vision = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=2, image_size=2 * side, patch_size=2, projection_dim=64)
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab - 1,
                            image_seq_length=side * side)
    config._attn_implementation = "sdpa"
    model = tf.LlavaForConditionalGeneration(config).eval()
    half = text_tokens // 2
    ids = torch.randint(3, vocab - 8, (batch_size, text_tokens + side * side))
    ids[:, half:half + side * side] = vocab - 1
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "pixel_values": torch.randn(batch_size, 3, 2 * side, 2 * side)}
    return model, batch


MODES = {"plain": ("plain", None), "certify": ("ours", None), "plain, 1 logit": ("plain", 1),
         "certify, 1 logit": ("ours", 1)}


def measure(model, batch):
    """MiB above the weights at the peak of each forward of :data:`MODES`."""
    with torch.inference_mode():
        model(**batch)  # first forward builds lazy state (rotary caches, masks)
    out = {}
    for name, (mode, keep) in MODES.items():
        kwargs = dict(batch, logits_to_keep=keep) if keep else batch
        peak, _ = peak_extra_bytes(model, kwargs, mode)
        out[name] = peak / MIB
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--text", type=int, default=60)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="at 24 x 24 vision tokens")
    p.add_argument("--sides", type=int, nargs="+", default=[24, 34, 48],
                   help="vision tokens per side at batch 1 (576, 1156, 2304 tokens)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = [(b, 24) for b in args.batch_sizes] + [(1, s) for s in args.sides if s != 24 or 1 not in args.batch_sizes]
    print(f"# bench_memory: LLaVA architecture, {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, "
          f"{args.text} text tokens, float32, CPU, torch {torch.__version__}; MiB above the weights at the "
          "forward's peak (glibc mallinfo2, sampled after every tensor op)")
    head = f"{'B':>2} {'vision':>6} {'S':>5} " + " ".join(f"{name:>16}" for name in MODES) + f" {'B*S*V*4 MiB':>11}"
    print(head)
    rows = []
    for batch_size, side in grid:
        model, batch = build(args.hidden, args.layers, args.vocab, args.text, side, batch_size)
        seq = batch["input_ids"].shape[1]
        figures = measure(model, batch)
        logits = batch_size * seq * args.vocab * 4 / MIB
        rows.append({"batch": batch_size, "vision_tokens": side * side, "sequence": seq, "mib": figures,
                     "logits_mib": logits})
        print(f"{batch_size:>2} {side * side:>6} {seq:>5} " + " ".join(f"{figures[n]:>16.1f}" for n in MODES)
              + f" {logits:>11.1f}", flush=True)
        del model, batch
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
