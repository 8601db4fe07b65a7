"""Capture cost: plain forward vs ``capture_statistics`` vs the naive capture, side by side.

Model: LLaVA architecture with random weights, a 1-layer CLIP tower whose 48x48 image with
patch 2 gives 24 x 24 = 576 vision tokens, a Llama decoder of ``--layers`` layers and hidden
size ``--hidden`` (intermediate 2.75 x hidden), about ``--text`` text tokens, batch 1.

* time: the three modes are run interleaved ``--repeats`` times in one process (after a
  warm-up of each); the figure is median(ours) / median(plain) (target <= 1.15). Ours
  captures everything: distances, proximal counts, CKA and the attention ratio.
* memory: live CPU bytes are read from glibc's ``mallinfo2`` (torch's CPU allocator
  allocates through malloc; RSS is useless here because freed memory stays mapped) after
  every tensor operation of the forward (a ``TorchDispatchMode``, so the float64 copies and
  Gram matrices inside the capture's hooks are seen) and once more while the outputs are
  still held. A mode's peak is the largest sample minus the bytes before its forward; its
  extra memory is that peak minus the plain forward's. The naive capture keeps
  ``output_hidden_states`` and the eager ``output_attentions`` maps (as a naive script would
  hold them to compute its statistics); the figure is naive extra / ours extra (target >= 10).

Run: ``.venv/bin/python benchmarks/bench_capture.py`` (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import time

import torch


def build(args, attn="sdpa"):
    import transformers as tf

    torch.manual_seed(0)
    text = dict(model_type="llama", vocab_size=args.vocab, hidden_size=args.hidden,
                intermediate_size=int(2.75 * args.hidden) // 64 * 64, num_hidden_layers=args.layers,
                num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64,
                max_position_embeddings=4096, pad_token_id=0)
    vision = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=2, image_size=48, patch_size=2, projection_dim=64)
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_index=args.vocab - 1,
                            image_seq_length=576)
    config._attn_implementation = attn
    model = tf.LlavaForConditionalGeneration(config).eval()
    half = args.text // 2
    ids = torch.randint(3, args.vocab - 8, (1, args.text + 576))
    ids[0, half:half + 576] = args.vocab - 1
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(1, 3, 48, 48)}
    return model, batch


def run_mode(model, batch, mode):
    from skipit.empirical import capture_statistics

    with torch.inference_mode():
        if mode == "plain":
            model(**batch)
            return None
        if mode == "ours":
            with capture_statistics(model) as cap:
                model(**batch)
            return cap.statistics
        model.set_attn_implementation("eager")
        try:
            out = model(**batch, output_hidden_states=True, output_attentions=True)
        finally:
            model.set_attn_implementation("sdpa")
        return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap_in_use():
    """Bytes malloc'ed and not freed (glibc ``mallinfo2``: heap + mmap'ed chunks); torch's CPU allocator
    allocates through malloc, so this counts every live CPU tensor."""
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


_LIBC = ctypes.CDLL("libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def peak_extra_bytes(model, batch, mode):
    """Peak of live malloc'ed bytes during (and right after) one forward, minus the bytes before it.

    Sampled after every tensor operation (a ``TorchDispatchMode``), so the transients inside
    the capture's hooks and inside eager attention are seen, and once more while the outputs
    are still held.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    from skipit.empirical import capture_statistics

    gc.collect()
    base = _heap_in_use()
    peak = [0]

    def sample():
        peak[0] = max(peak[0], _heap_in_use() - base)

    class Sampler(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            sample()
            return out

    def forward():
        with torch.inference_mode(), Sampler():
            if mode == "naive":
                out = model(**batch, output_hidden_states=True, output_attentions=True)
            else:
                out = model(**batch)
        sample()
        return out

    if mode == "ours":
        with capture_statistics(model) as cap:
            out = forward()
        sample()
        del cap
    elif mode == "naive":
        model.set_attn_implementation("eager")
        try:
            out = forward()
        finally:
            model.set_attn_implementation("sdpa")
    else:
        out = forward()
    held = 0
    if mode == "naive":
        held = sum(t.numel() * t.element_size() for t in list(out.hidden_states) + list(out.attentions))
    del out
    return peak[0], held


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--text", type=int, default=60)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-time", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = (f"LLaVA architecture, random weights: {args.layers} layers, hidden {args.hidden}, "
              f"576 vision + {args.text} text tokens, batch 1, float32, {torch.get_num_threads()} torch threads, "
              f"torch {torch.__version__}")
    print(config)
    model, batch = build(args)
    times = {} if args.no_time else {"plain": [], "ours": [], "naive": []}
    for mode in times:  # warm-up
        run_mode(model, batch, mode)
    for _ in range(args.repeats):
        for mode in times:
            start = time.perf_counter()
            run_mode(model, batch, mode)
            times[mode].append(time.perf_counter() - start)
    if times:
        med = {mode: statistics.median(ts) for mode, ts in times.items()}
        print("median wall s: " + ", ".join(f"{m} {t:.3f}" for m, t in med.items()))
        ratio = med["ours"] / med["plain"]
        print(f"time ours/plain = {ratio:.3f} (target <= 1.15); naive/plain = {med['naive'] / med['plain']:.3f}")
    if args.no_memory:
        return
    mib = 2.0 ** 20
    peaks = {}
    if not times:  # first forwards allocate lazily built state (masks, rotary caches, hooks)
        for mode in ("plain", "ours", "naive"):
            run_mode(model, batch, mode)
    for mode in ("plain", "ours", "naive"):
        peaks[mode], held = peak_extra_bytes(model, batch, mode)
        print(f"{mode}: peak live CPU memory during the forward {peaks[mode] / mib:.1f} MiB above the model"
              + (f" (returned hidden states + attention maps: {held / mib:.1f} MiB)" if held else ""))
    ours_extra = max(peaks["ours"] - peaks["plain"], 0)
    naive_extra = peaks["naive"] - peaks["plain"]
    floor = 1.0 * mib  # below this the difference of two peaks is allocator noise
    bound = ">=" if ours_extra < floor else "="
    print(f"extra over plain: ours {ours_extra / mib:.1f} MiB, naive {naive_extra / mib:.1f} MiB; "
          f"memory naive/ours {bound} {naive_extra / max(ours_extra, floor):.1f} (target >= 10; ours floored at 1 MiB)")


if __name__ == "__main__":
    main()
