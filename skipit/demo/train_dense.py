"""Train the dense demo VLM (``demo-dense``): ``python -m skipit.demo.train --model demo-dense --out DIR``.

A ``LlavaForConditionalGeneration`` (2-layer CLIP tower on 32x32 upsampled digits, 8x8
patches -> 16 image tokens, a GELU projector, a 12-layer Llama decoder) learns four kinds of
question about sklearn's handwritten digits (:mod:`skipit.demo`), each answered by one token.
The loss is the cross-entropy of that token at the last prompt position; nothing else is
supervised. Phase 1 trains on the four question types; phase 2, with a fresh optimiser,
weights the mixture towards multiple choice and adds a text-only auxiliary (``choice_text``)
that teaches the option matching, the skill a model this small learns last. Training is deterministic: fixed seeds, a fixed thread count and
``torch.use_deterministic_algorithms``, so the same arguments on the same machine give
bit-identical weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from skipit.demo import (
    CHOICE_LETTERS,
    DIGIT_WORDS,
    QUESTION_TYPES,
    _digits,
    digits_vqa_records,
    make_question,
    prompt,
    split_indices,
)

TEST_SUBSET = 200
"""The first TEST_SUBSET examples of ``load_digits_vqa("test")`` are the fixed subset the tests score."""
SPECIAL_TOKENS = ("<pad>", "<unk>", "<image>")
WORDS = (
    "USER", ":", "ASSISTANT", "which", "digit", "is", "shown", "?", "the", "even", "greater", "than",
    "yes", "no", ")", *DIGIT_WORDS, *CHOICE_LETTERS,
)

DEFAULT_CONFIG = {
    "seed": 0,
    "threads": 1,
    "steps": 2400,
    "batch_size": 64,
    "lr": 1e-3,
    "warmup": 100,
    "weight_decay": 0.01,
    "augment": True,
    "type_weights": [0.25, 0.15, 0.2, 0.4],
    "finetune_steps": 1200,
    "finetune_lr": 1e-3,
    "finetune_warmup": 50,
    "finetune_type_weights": [0.1, 0.05, 0.05, 0.4, 0.4],
    "image_size": 32,
    "patch_size": 8,
    "vision_hidden": 64,
    "vision_layers": 2,
    "vision_heads": 4,
    "vision_intermediate": 128,
    "text_hidden": 96,
    "text_layers": 12,
    "text_heads": 4,
    "text_intermediate": 256,
    "eval_batch_size": 256,
}
"""Recipe of the committed weights; ``--set KEY=VALUE`` overrides any entry."""


def num_image_tokens(cfg) -> int:
    """Image tokens per image: one per patch (the CLIP class token is dropped, "default" strategy)."""
    return (cfg["image_size"] // cfg["patch_size"]) ** 2


def build_tokenizer():
    """Word-level tokenizer over the demo vocabulary (left padding, so logits[:, -1] is the answer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"}, padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def build_processor(cfg=None):
    """``LlavaProcessor`` = CLIP image processor (upsample 8x8 -> image_size) + word-level tokenizer."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    cfg = {**DEFAULT_CONFIG, **(cfg or {})}
    size = cfg["image_size"]
    image_processor = CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=3,
        do_center_crop=True, crop_size={"height": size, "width": size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=build_tokenizer(), patch_size=cfg["patch_size"],
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )


def build_model(cfg, tokenizer):
    """A freshly initialised LLaVA model of the recipe ``cfg`` (seed the RNG first)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=cfg["vision_hidden"], intermediate_size=cfg["vision_intermediate"],
        num_hidden_layers=cfg["vision_layers"], num_attention_heads=cfg["vision_heads"],
        image_size=cfg["image_size"], patch_size=cfg["patch_size"], num_channels=3,
        projection_dim=cfg["vision_hidden"],
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg["text_hidden"],
        intermediate_size=cfg["text_intermediate"], num_hidden_layers=cfg["text_layers"],
        num_attention_heads=cfg["text_heads"], num_key_value_heads=cfg["text_heads"],
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None, eos_token_id=None, tie_word_embeddings=False,
        **({"initializer_range": cfg["text_init"]} if "text_init" in cfg else {}),
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=False, image_seq_length=num_image_tokens(cfg),
    )
    return LlavaForConditionalGeneration(config)


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def pixel_table(processor, indices, shifts=((0, 0),)):
    """Processed pixel values of digits ``indices`` under each ``(dy, dx)`` shift: (S, N, 3, H, W)."""
    import torch
    from PIL import Image

    images, _ = _digits()
    tables = []
    for dy, dx in shifts:
        pil = [Image.fromarray(np.rint(_shifted(images[i], dy, dx) * (255 / 16)).astype(np.uint8), mode="L")
               for i in indices]
        tables.append(processor.image_processor(pil, return_tensors="pt")["pixel_values"])
    return torch.stack(tables)


class PromptCache:
    """Token ids of prompts, each question tokenised once (the processor's expansion, done by hand)."""

    def __init__(self, tokenizer, n_image_tokens):
        self.tokenizer = tokenizer
        self.n_image_tokens = n_image_tokens
        self.cache = {}

    def __call__(self, question: str) -> list[int]:
        if question not in self.cache:
            text = prompt(question).replace("<image>", "<image>" * self.n_image_tokens)
            self.cache[question] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.cache[question]


def collate(id_lists, pad_id):
    """Left-pad token id lists into ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for row, ids in enumerate(id_lists):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        mask[row, width - len(ids):] = 1
    return input_ids, mask


def answer_logits(model, input_ids, attention_mask, pixel_values):
    """Next-token logits at the last prompt position, (B, vocab)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                logits_to_keep=1)
    return out.logits[:, -1, :]


def evaluate_records(model, processor, records, pixels_by_index, batch_size=256):
    """Accuracy per question type (and ``"all"``) of argmax next-token answers on ``records``."""
    import torch

    tok = processor.tokenizer
    prompts = PromptCache(tok, model.config.image_seq_length)
    correct = {t: 0 for t in QUESTION_TYPES}
    total = {t: 0 for t in QUESTION_TYPES}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            ids, mask = collate([prompts(r["question"]) for r in chunk], tok.pad_token_id)
            pix = torch.stack([pixels_by_index[r["image_index"]] for r in chunk])
            pred = answer_logits(model, ids, mask, pix).argmax(-1)
            for r, p in zip(chunk, pred.tolist()):
                total[r["type"]] += 1
                correct[r["type"]] += int(p == tok.convert_tokens_to_ids(r["answer"]))
    acc = {t: correct[t] / total[t] for t in QUESTION_TYPES if total[t]}
    acc["all"] = sum(correct.values()) / max(sum(total.values()), 1)
    acc["n"] = sum(total.values())
    return acc


def evaluate_examples(model, processor, examples, batch_size=64):
    """Accuracy per type of ``examples`` (dicts from :func:`skipit.demo.load_digits_vqa`) through the
    processor end to end, as a user of the saved model would score them."""
    import torch

    tok = processor.tokenizer
    correct, total = {}, {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            inputs = processor(images=[e["image"] for e in chunk],
                               text=[prompt(e["question"]) for e in chunk],
                               padding=True, return_tensors="pt")
            pred = model(**inputs, logits_to_keep=1).logits[:, -1, :].argmax(-1).tolist()
            for e, p in zip(chunk, pred):
                t = e.get("type", "all")
                total[t] = total.get(t, 0) + 1
                correct[t] = correct.get(t, 0) + int(p == tok.convert_tokens_to_ids(e["answer"]))
    return {t: correct[t] / total[t] for t in total}


def subset_metrics(model, processor):
    """Accuracy per type on the fixed test subset, scored through the processor (see TEST_SUBSET)."""
    from skipit.demo import load_digits_vqa

    examples = load_digits_vqa("test", seed=0)[:TEST_SUBSET]
    return {"n": len(examples), **evaluate_examples(model, processor, examples)}


@contextlib.contextmanager
def deterministic(seed: int, threads: int):
    """Seeded RNG, ``threads`` intra-op threads and deterministic kernels inside; the caller's
    RNG state, thread count and determinism flag are restored on exit."""
    import torch

    if threads < 1:
        raise ValueError(f"`threads` must be >= 1, got {threads}")
    old_threads = torch.get_num_threads()
    old_flag = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_flag)


def train(cfg=None, out=None, log=print, evaluate=True, init_from=None):
    """Train the demo model with recipe ``cfg`` (defaults :data:`DEFAULT_CONFIG`); save to ``out``.

    Returns ``(model, processor, metrics)``; ``metrics`` holds the held-out test and val
    accuracy per question type (unless ``evaluate`` is false), the parameter count and the
    wall-clock training time. Training has two phases: ``steps`` on the four question types
    (``type_weights``), then ``finetune_steps`` with a fresh optimiser on a mixture weighted
    towards multiple choice (``finetune_type_weights`` over :data:`TRAIN_TYPES`). ``init_from``
    (a directory written by a run of the same recipe) replaces phase 1 by its saved weights;
    phase 2 draws from its own seeded stream, so the result is the same as a full run.
    """
    cfg = {**DEFAULT_CONFIG, **(cfg or {})}
    unknown = set(cfg) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(DEFAULT_CONFIG)}")
    if cfg["steps"] < 1:
        raise ValueError(f"`steps` must be >= 1, got {cfg['steps']}")
    _check_weights(cfg["type_weights"], "type_weights", QUESTION_TYPES)
    _check_weights(cfg["finetune_type_weights"], "finetune_type_weights", TRAIN_TYPES)
    with deterministic(cfg["seed"], cfg["threads"]):
        return _train(cfg, out, log, evaluate, init_from)


TRAIN_TYPES = (*QUESTION_TYPES, "choice_text")
"""Training question types: the four evaluated ones and ``choice_text``, multiple choice with the
digit named in the text ("which digit is 3? A) 3 B) 7 C) 1 D) 9"), an auxiliary task that
teaches the option-matching the image version needs (answered by the letter as well)."""


def _training_question(label, qtype, rng):
    if qtype != "choice_text":
        return make_question(label, qtype, rng)
    q = make_question(label, "choice", rng)
    return {**q, "question": q["question"].replace("which digit is shown?", f"which digit is {label}?")}


def _check_weights(weights, name, types):
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(types),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"`{name}` must be {len(types)} non-negative weights for {types}, not all zero, "
                         f"got {weights!r}")
    return w / w.sum()


def _run_phase(model, tok, train_pix, phase, cfg, rng, log, t0, name):
    """AdamW with linear warmup and cosine decay over ``phase["steps"]`` batches of fresh questions,
    of types drawn with probabilities ``phase["type_p"]`` over the first entries of TRAIN_TYPES."""
    import torch

    _, labels = _digits()
    train_idx = split_indices()["train"]
    n_shifts = train_pix.shape[0]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=phase["lr"])
    steps, warmup = phase["steps"], phase["warmup"]

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(steps - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    type_p = phase["type_p"]  # over a prefix of TRAIN_TYPES
    prompts = PromptCache(tok, num_image_tokens(cfg))
    answer_id = {w: tok.convert_tokens_to_ids(w) for w in (*DIGIT_WORDS, *CHOICE_LETTERS, "yes", "no")}
    model.train()
    running = 0.0
    for step in range(steps):
        pos = rng.integers(0, len(train_idx), size=cfg["batch_size"])
        shift = rng.integers(0, n_shifts, size=cfg["batch_size"])
        qtypes = rng.choice(len(type_p), size=cfg["batch_size"], p=type_p)
        qs = [_training_question(int(labels[train_idx[p]]), TRAIN_TYPES[q], rng) for p, q in zip(pos, qtypes)]
        ids, mask = collate([prompts(q["question"]) for q in qs], tok.pad_token_id)
        target = torch.tensor([answer_id[q["answer"]] for q in qs])
        pix = train_pix[torch.from_numpy(shift), torch.from_numpy(pos)]
        loss = torch.nn.functional.cross_entropy(answer_logits(model, ids, mask, pix), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"{name} step {step + 1}/{steps} loss {running:.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()


def _train(cfg, out, log, evaluate, init_from):
    import torch

    t0, cpu0 = time.perf_counter(), time.process_time()
    processor = build_processor(cfg)
    tok = processor.tokenizer
    model = build_model(cfg, tok)
    if init_from is not None:
        from transformers import LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration.from_pretrained(init_from, dtype=torch.float32,
                                                              local_files_only=True)
        model.config.image_seq_length = num_image_tokens(cfg)
        log(f"phase 1 skipped: weights from {init_from}")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters: {n_params}")

    splits = split_indices()
    train_idx = splits["train"]
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] if cfg["augment"] else [(0, 0)]
    train_pix = pixel_table(processor, train_idx, shifts)

    if init_from is None:
        phase = {"steps": cfg["steps"], "lr": cfg["lr"], "warmup": cfg["warmup"],
                 "type_p": _check_weights(cfg["type_weights"], "type_weights", QUESTION_TYPES)}
        _run_phase(model, tok, train_pix, phase, cfg, np.random.default_rng(cfg["seed"]), log, t0, "phase 1")
    if cfg["finetune_steps"] > 0:
        phase = {"steps": cfg["finetune_steps"], "lr": cfg["finetune_lr"], "warmup": cfg["finetune_warmup"],
                 "type_p": _check_weights(cfg["finetune_type_weights"], "finetune_type_weights", TRAIN_TYPES)}
        _run_phase(model, tok, train_pix, phase, cfg, np.random.default_rng([cfg["seed"], 2]), log, t0,
                   "phase 2")
    train_seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0

    metrics = {"config": cfg, "parameters": n_params, "train_seconds": round(train_seconds, 1),
               "train_cpu_seconds": round(cpu_seconds, 1),
               "threads": cfg["threads"], "torch_version": torch.__version__,
               "init_from": None if init_from is None else os.fspath(init_from)}
    if evaluate:
        held = np.concatenate([splits["val"], splits["test"]])
        held_pix = pixel_table(processor, held)[0]
        pixels_by_index = {int(i): held_pix[k] for k, i in enumerate(held)}
        for split in ("val", "test"):
            metrics[split] = evaluate_records(model, processor, digits_vqa_records(split, seed=0),
                                              pixels_by_index, cfg["eval_batch_size"])
            log(f"{split}: " + ", ".join(f"{k} {v:.4f}" if k != "n" else f"n {v}"
                                          for k, v in metrics[split].items()))
        metrics["test_subset"] = subset_metrics(model, processor)
        log(f"test subset ({TEST_SUBSET} examples, processor path): {metrics['test_subset']}")
    model.eval()
    save_run(model, processor, metrics, out, log)
    return model, processor, metrics


def save_run(model, processor, metrics, out, log):
    """Write a trained demo model, its processor and ``metrics.json`` to ``out`` (None: nothing)."""
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        processor.save_pretrained(out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log(f"saved to {out}")


def parse_set(items, defaults):
    """``--set KEY=VALUE`` overrides of a recipe (``defaults``: its DEFAULT_CONFIG), each value
    parsed as JSON and cast to the default's type; an unknown key ends the command in one line."""
    cfg = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise SystemExit(f"--set wants KEY=VALUE with KEY in {sorted(defaults)}, got {item!r}")
        cfg[key] = type(defaults[key])(json.loads(value))
    return cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skipit.demo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for weights, processor and metrics.json")
    parser.add_argument("--max-steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe entry, e.g. --set text_layers=2")
    parser.add_argument("--init-from", default=None, metavar="DIR",
                        help="skip phase 1, starting phase 2 from the weights a run of this recipe wrote")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = parse_set(args.set, DEFAULT_CONFIG)
    if args.max_steps is not None:
        cfg["steps"] = args.max_steps
    train(cfg, args.out, log=lambda msg: print(msg, flush=True), evaluate=not args.no_eval,
          init_from=args.init_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
