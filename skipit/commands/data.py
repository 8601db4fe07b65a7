"""``skipit data``: what a data set or benchmark preset shows the model, before any GPU hour.

For each example: the text handed to the chat template (the question as the preset builds it),
the full templated prompt of ``--model``'s processor (default: the bundled demo model's), the
target(s), the metric and the answer parser. ``--json`` prints one JSON object with the same keys.
Loads the processor only (no weights).
"""

from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    from skipit.empirical.data import add_data_arguments

    p = subparsers.add_parser(
        "data", help="show the prompts, targets and metric of a data set or --task preset (no model weights)",
        description="Print, per example, the text handed to the chat template, the full templated prompt, the "
                    "target(s) and the metric, so a preset can be checked before spending GPU hours.")
    p.add_argument("data", nargs="?", default=None, metavar="DATA",
                   help="JSONL file, bundled set, Hugging Face dataset or hub id in the local cache (default: the "
                        "--task preset's dataset id, else digits-test)")
    p.add_argument("--model", default=None, metavar="NAME|HUB_ID|PATH",
                   help="whose processor (chat template) builds the prompt (default: the bundled demo model)")
    p.add_argument("--limit", type=int, default=5, metavar="N", help="examples to show (default: 5; 0 = all)")
    p.add_argument("--json", action="store_true", help="one JSON object: the report and the examples")
    p.add_argument("--skip-bad", action="store_true", help="skip (and report) bad lines or rows instead of stopping")
    add_data_arguments(p)
    return p


def _processor(model):
    from transformers import AutoConfig

    from skipit.empirical.loading import resolve_model
    from skipit.empirical.processors import load_processor

    location = resolve_model(model).location
    return load_processor(location, AutoConfig.from_pretrained(location))


def run(args):
    from skipit.empirical.data import build_prompt, examples_from_args
    from skipit.errors import SkipitError

    if args.limit < 0:
        raise SkipitError(f"--limit must be >= 0 (0 = all), got {args.limit}")
    args.samples = args.limit
    examples, report = examples_from_args(args)
    processor = _processor(args.model)
    rows = [{"source": ex.source, "text": ex.question, "prompt": build_prompt(processor, ex),
             "target": ex.answer, "references": ex.answers, "choices": list(ex.choices), "metric": ex.metric,
             "parser": ex.parser or ("one-token" if ex.metric == "letter" else "text")} for ex in examples]
    head = {"source": report.source, "task": report.task, "prompt_style": report.prompt_style,
            "metric": report.metric, "max_new_tokens": report.max_new_tokens, "sha256": report.sha256,
            "skipped": [[n, why] for n, why in report.skipped]}
    if args.json:
        json.dump({**head, "examples": rows}, sys.stdout, indent=1, ensure_ascii=False)
        print()
        return 0
    print(f"{report.source}" + (f"  task {report.task} ({report.prompt_style})" if report.task else "")
          + f"  metric {report.metric}  max new tokens {report.max_new_tokens}")
    for n, why in report.skipped:
        print(f"skipped {report.unit} {n}: {why}", file=sys.stderr)
    for row in rows:
        print(f"\n=== {row['source']}\n--- text handed to the chat template\n{row['text']}\n--- templated prompt\n"
              f"{row['prompt']}\n--- target: {row['target']!r}"
              + (f"  references: {row['references']!r}" if len(row['references']) > 1 else "")
              + f"\n--- metric: {row['metric']}  parser: {row['parser']}")
    return 0
