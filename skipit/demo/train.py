"""Train a bundled demo VLM: ``python -m skipit.demo.train --out DIR [--model demo|demo-dense]``.

``demo`` (the default) is trained the way real VLMs are, its parts first, then together:

0. **vision encoder pretraining**: the CLIP tower alone classifies the train digits (a linear
   head on its mean patch feature, discarded afterwards), as a VLM starts from a pretrained
   vision encoder;
1. **language pretraining**: the Llama decoder alone, as a language model (next-token loss on
   every token) on a synthetic text corpus of questions that need depth to answer: arithmetic
   on number words, comparisons, multiple choice, counting, copying and two-step sums
   (:func:`skipit.demo.questions.text_document`);
2. **alignment**: the projector alone learns to caption a digit
   (``which digit is shown?`` -> ``seven``), vision tower and decoder frozen (LLaVA's stage 1);
3. **visual instruction tuning**: every weight is trained on visual questions
   (:data:`skipit.demo.questions.VISUAL_TYPES`), a fifth of the batches text-only questions
   from the corpus (as LLaVA-1.5 mixes in text-only conversations).

Phases 2 and 3 take the loss on the answer and end-of-sequence tokens only, as visual instruction
tuning does. Nothing in the recipe refers to how layers treat the vision tokens. ``demo-dense``
is the earlier one-token model (:mod:`skipit.demo.train_dense`). Training is deterministic:
fixed seeds, a fixed thread count and ``torch.use_deterministic_algorithms``, so the same
arguments on the same machine give bit-identical weights.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

from skipit.demo import _digits, split_indices
from skipit.demo.questions import MULTI_WORD_TYPES, TEXT_TYPES, VISUAL_TYPES, WORDS, question, text_document
from skipit.demo.train_dense import deterministic, parse_set, pixel_table, save_run

SPECIAL_TOKENS = ("<pad>", "<unk>", "<image>", "<s>", "</s>")
PROMPT = "USER: {context}{question} ASSISTANT:"
"""A prompt: ``{context}`` is ``<image>\\n`` for a visual question, a sentence and a space for a
text question with a context, else empty. The tokenizer puts ``<s>`` in front."""

DEFAULT_CONFIG = {
    "seed": 0,
    "threads": 1,
    "batch_size": 64,
    "weight_decay": 0.01,
    "augment": True,
    "vision_steps": 2000,
    "vision_lr": 1e-3,
    "vision_warmup": 50,
    "lm_steps": 1600,
    "lm_lr": 1e-3,
    "lm_warmup": 100,
    "lm_type_weights": [1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    "align_steps": 300,
    "align_lr": 1e-3,
    "align_warmup": 50,
    "tune_steps": 1200,
    "tune_lr": 5e-4,
    "tune_warmup": 50,
    "tune_type_weights": [1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0],
    "tune_text_fraction": 0.2,
    "image_size": 32,
    "patch_size": 8,
    "vision_hidden": 64,
    "vision_layers": 2,
    "vision_heads": 4,
    "vision_intermediate": 128,
    "text_hidden": 64,
    "text_layers": 16,
    "text_heads": 4,
    "text_intermediate": 128,
    "text_init": 0.05,
    "eval_batch_size": 256,
}
"""Recipe of the committed ``demo`` weights; ``--set KEY=VALUE`` overrides any entry."""


def visual_prompt(question_text: str) -> str:
    """The prompt of a visual question (before the processor expands ``<image>``)."""
    return PROMPT.format(context="<image>\n", question=question_text)


def build_tokenizer():
    """Word-level tokenizer over :data:`skipit.demo.questions.WORDS`: ``<s>`` before every text,
    ``</s>`` ends an answer, left padding (so ``logits[:, -1]`` is the answer position)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"}, padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def build_processor(cfg=None):
    """``LlavaProcessor``: the dense demo's CLIP image processor and :func:`build_tokenizer`."""
    from transformers import LlavaProcessor

    from skipit.demo.train_dense import build_processor as dense_processor

    cfg = {**DEFAULT_CONFIG, **(cfg or {})}
    return LlavaProcessor(
        image_processor=dense_processor(cfg).image_processor, tokenizer=build_tokenizer(),
        patch_size=cfg["patch_size"], vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )


def build_model(cfg, tokenizer):
    """A freshly initialised LLaVA model of the recipe ``cfg`` (seed the RNG first)."""
    from skipit.demo.train_dense import build_model as dense_model

    model = dense_model(cfg, tokenizer)
    for config in (model.config.text_config, model.generation_config):
        config.bos_token_id = tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
    return model


class Encoder:
    """Token ids of prompts and answers (prompts cached; ``<image>`` expanded by hand, as the processor does)."""

    def __init__(self, tokenizer, n_image_tokens):
        self.tokenizer = tokenizer
        self.n_image_tokens = n_image_tokens
        self.cache = {}

    def prompt(self, context: str, question_text: str) -> list[int]:
        key = (context, question_text)
        if key not in self.cache:
            text = PROMPT.format(context=context, question=question_text)
            text = text.replace("<image>", "<image>" * self.n_image_tokens)
            self.cache[key] = self.tokenizer(text)["input_ids"]
        return self.cache[key]

    def answer(self, answer: str) -> list[int]:
        key = ("answer", answer)
        if key not in self.cache:
            self.cache[key] = [*self.tokenizer(answer, add_special_tokens=False)["input_ids"],
                               self.tokenizer.eos_token_id]
        return self.cache[key]


def collate(prompts, answers, pad_id, loss_on_prompt):
    """Left-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 = no loss) of prompt + answer."""
    import torch

    rows = [p + a for p, a in zip(prompts, answers)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (p, a) in enumerate(zip(prompts, answers)):
        row = p + a
        start = width - len(row)
        ids[r, start:] = torch.tensor(row)
        mask[r, start:] = 1
        first = start + 1 if loss_on_prompt else start + len(p)
        labels[r, first:] = ids[r, first:]
    return ids, mask, labels


def lm_loss(model, ids, mask, labels, pixel_values=None):
    """Mean next-token cross-entropy over the labelled positions."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)


def _weights(values, name, types):
    w = np.asarray(values, dtype=np.float64)
    if w.shape != (len(types),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"`{name}` must be {len(types)} non-negative weights for {types}, not all zero, "
                         f"got {values!r}")
    return w / w.sum()


class Batches:
    """Fresh training batches drawn from one seeded stream."""

    def __init__(self, cfg, encoder, train_pix, rng):
        self.cfg, self.enc, self.train_pix, self.rng = cfg, encoder, train_pix, rng
        _, self.labels = _digits()
        self.train_idx = split_indices()["train"]
        self.text_p = _weights(cfg["lm_type_weights"], "lm_type_weights", TEXT_TYPES)
        self.visual_p = _weights(cfg["tune_type_weights"], "tune_type_weights", VISUAL_TYPES)

    def text(self, loss_on_prompt):
        rng, n = self.rng, self.cfg["batch_size"]
        docs = [text_document(TEXT_TYPES[t], rng) for t in rng.choice(len(TEXT_TYPES), size=n, p=self.text_p)]
        prompts = [self.enc.prompt(d["context"] + " " if d["context"] else "", d["question"]) for d in docs]
        return (*collate(prompts, [self.enc.answer(d["answer"]) for d in docs], self.enc.tokenizer.pad_token_id,
                         loss_on_prompt), None)

    def digits(self):
        """Augmented train images and their labels, for the vision tower's pretraining."""
        import torch

        n = self.cfg["batch_size"]
        pos = self.rng.integers(0, len(self.train_idx), size=n)
        shift = self.rng.integers(0, self.train_pix.shape[0], size=n)
        return (self.train_pix[torch.from_numpy(shift), torch.from_numpy(pos)],
                torch.from_numpy(self.labels[self.train_idx[pos]]))

    def visual(self, types_p):
        import torch

        rng, n = self.rng, self.cfg["batch_size"]
        pos = rng.integers(0, len(self.train_idx), size=n)
        shift = rng.integers(0, self.train_pix.shape[0], size=n)
        qtypes = rng.choice(len(VISUAL_TYPES), size=n, p=types_p)
        qs = [question(VISUAL_TYPES[t], int(self.labels[self.train_idx[p]]), rng) for p, t in zip(pos, qtypes)]
        prompts = [self.enc.prompt("<image>\n", q["question"]) for q in qs]
        ids, mask, labels = collate(prompts, [self.enc.answer(q["answer"]) for q in qs],
                                    self.enc.tokenizer.pad_token_id, False)
        return ids, mask, labels, self.train_pix[torch.from_numpy(shift), torch.from_numpy(pos)]


def _optimiser(model, params, lr, steps, warmup, weight_decay):
    import torch

    names = {id(p): n for n, p in model.named_parameters()}
    decay = [p for p in params if p.ndim >= 2 and "embed" not in names.get(id(p), "head")]
    rest = [p for p in params if not (p.ndim >= 2 and "embed" not in names.get(id(p), "head"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(steps - warmup, 1), 1.0)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def digit_loss(model, head, pixel_values, target):
    """Cross-entropy of a linear digit classifier on the vision tower's mean patch feature (the
    features the projector reads: last layer, class token dropped)."""
    import torch

    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-1]
    return torch.nn.functional.cross_entropy(head(hidden[:, 1:].mean(1)), target)


def _run(model, params, name, steps, lr, warmup, cfg, next_batch, log, t0, loss_fn=None):
    import torch

    if steps <= 0:
        return
    opt, sched = _optimiser(model, params, lr, steps, warmup, cfg["weight_decay"])
    model.train()
    running = None
    for step in range(steps):
        batch = next_batch(step)
        loss = lm_loss(model, *batch) if loss_fn is None else loss_fn(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"{name} step {step + 1}/{steps} loss {running:.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()


def train(cfg=None, out=None, log=print, evaluate=True):
    """Train ``demo`` with recipe ``cfg`` (defaults :data:`DEFAULT_CONFIG`); save to ``out``.

    Returns ``(model, processor, metrics)``; ``metrics`` holds the recipe, the parameter count,
    the training time and (unless ``evaluate`` is false) the held-out accuracy per question type.
    """
    cfg = {**DEFAULT_CONFIG, **(cfg or {})}
    unknown = set(cfg) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(DEFAULT_CONFIG)}")
    _weights(cfg["lm_type_weights"], "lm_type_weights", TEXT_TYPES)
    _weights(cfg["tune_type_weights"], "tune_type_weights", VISUAL_TYPES)
    if not 0 <= cfg["tune_text_fraction"] < 1:
        raise ValueError(f"`tune_text_fraction` must be in [0, 1), got {cfg['tune_text_fraction']}")
    with deterministic(cfg["seed"], cfg["threads"]):
        return _train(cfg, out, log, evaluate)


def _train(cfg, out, log, evaluate):
    import torch

    t0, cpu0 = time.perf_counter(), time.process_time()
    processor = build_processor(cfg)
    tok = processor.tokenizer
    model = build_model(cfg, tok)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters: {n_params}")
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] if cfg["augment"] else [(0, 0)]
    train_pix = pixel_table(processor, split_indices()["train"], shifts)
    batches = Batches(cfg, Encoder(tok, model.config.image_seq_length), train_pix, np.random.default_rng(cfg["seed"]))

    vision_tower = list(model.model.vision_tower.parameters())
    head = torch.nn.Linear(cfg["vision_hidden"], 10)
    _run(model, [*vision_tower, *head.parameters()], "0 vision", cfg["vision_steps"], cfg["vision_lr"],
         cfg["vision_warmup"], cfg, lambda step: batches.digits(), log, t0,
         loss_fn=lambda pix, target: digit_loss(model, head, pix, target))
    decoder = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
    _run(model, decoder, "1 language", cfg["lm_steps"], cfg["lm_lr"], cfg["lm_warmup"], cfg,
         lambda step: batches.text(loss_on_prompt=True), log, t0)
    frozen = [*decoder, *vision_tower]
    for p in frozen:
        p.requires_grad_(False)
    caption = np.eye(len(VISUAL_TYPES))[VISUAL_TYPES.index("digit")]
    _run(model, list(model.model.multi_modal_projector.parameters()), "2 alignment", cfg["align_steps"],
         cfg["align_lr"], cfg["align_warmup"], cfg, lambda step: batches.visual(caption), log, t0)
    for p in frozen:
        p.requires_grad_(True)
    text_every = cfg["tune_text_fraction"]

    def tune_batch(step):
        if batches.rng.random() < text_every:
            return batches.text(loss_on_prompt=False)
        return batches.visual(batches.visual_p)

    _run(model, list(model.parameters()), "3 tuning", cfg["tune_steps"], cfg["tune_lr"], cfg["tune_warmup"], cfg,
         tune_batch, log, t0)
    metrics = {"config": cfg, "parameters": n_params,
               "train_seconds": round(time.perf_counter() - t0, 1),
               "train_cpu_seconds": round(time.process_time() - cpu0, 1),
               "threads": cfg["threads"], "torch_version": torch.__version__}
    if evaluate:
        for split in ("val", "test"):
            metrics[split] = accuracy(model, processor, split, cfg["eval_batch_size"])
            log(f"{split}: " + ", ".join(f"{k} {v:.4f}" if k != "n" else f"n {v}" for k, v in metrics[split].items()))
    save_run(model, processor, metrics, out, log)
    return model, processor, metrics


def greedy_answers(model, processor, pixel_values, question_texts, max_new_tokens=4):
    """Greedy answers (text, without ``</s>``) of ``model`` to visual questions, one image each."""
    import torch

    tok = processor.tokenizer
    enc = Encoder(tok, model.config.image_seq_length)
    ids, mask, _ = collate([enc.prompt("<image>\n", q) for q in question_texts], [[] for _ in question_texts],
                           tok.pad_token_id, False)
    done = torch.zeros(len(question_texts), dtype=torch.bool)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values,
                        logits_to_keep=1).logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            out.append(nxt)
            done |= nxt == tok.eos_token_id
            ids = torch.cat([ids, nxt[:, None]], 1)
            mask = torch.cat([mask, (~done | (nxt == tok.eos_token_id)).long()[:, None]], 1)
            if bool(done.all()):
                break
    rows = torch.stack(out, 1).tolist()
    return [tok.decode(r, skip_special_tokens=True).strip() for r in rows]


def accuracy(model, processor, split, batch_size=256):
    """Accuracy per question type (and ``"all"``, ``"n"``) on the bundled ``split`` questions
    (:func:`skipit.demo.reasoning_records`): exact match of the greedy answer."""
    import torch

    from skipit.demo import reasoning_records

    records = reasoning_records(split)
    indices = sorted({r["image_index"] for r in records})
    pix = pixel_table(processor, indices)[0]
    row = {i: k for k, i in enumerate(indices)}
    correct = {t: 0 for t in VISUAL_TYPES}
    total = {t: 0 for t in VISUAL_TYPES}
    model.eval()
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        steps = 3 if any(r["type"] in MULTI_WORD_TYPES for r in chunk) else 1
        got = greedy_answers(model, processor, torch.stack([pix[row[r["image_index"]]] for r in chunk]),
                             [r["question"] for r in chunk], max_new_tokens=steps)
        for r, g in zip(chunk, got):
            total[r["type"]] += 1
            correct[r["type"]] += int(g == r["answer"] if r["type"] in MULTI_WORD_TYPES
                                      else g.split(" ")[0] == r["answer"])
    acc = {t: correct[t] / total[t] for t in VISUAL_TYPES if total[t]}
    acc["all"] = sum(correct.values()) / max(sum(total.values()), 1)
    acc["n"] = sum(total.values())
    return acc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skipit.demo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", choices=("demo", "demo-dense"),
                        help="which bundled demo model's recipe (default: demo)")
    parser.add_argument("--out", required=True, help="directory for weights, processor and metrics.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe entry, e.g. --set text_layers=2")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    args, rest = parser.parse_known_args(argv)
    if args.model == "demo-dense":
        from skipit.demo import train_dense

        return train_dense.main(["--out", args.out, *[a for s in args.set for a in ("--set", s)],
                                 *(["--no-eval"] if args.no_eval else []), *rest])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    train(parse_set(args.set, DEFAULT_CONFIG), args.out, log=lambda msg: print(msg, flush=True),
          evaluate=not args.no_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
