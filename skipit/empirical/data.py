"""Examples for ``skipit certify``: JSONL files or bundled sets, prompts, padded batches.

A JSONL file holds one example a line::

    {"image": "images/0001.png", "question": "Which digit is this?", "answer": "7", "choices": ["1", "7"]}

``image`` is a path relative to the JSONL file; ``choices`` is optional. Every line is
checked before any model work (JSON, required fields and their types, the image opens);
each problem is reported with its 1-based line number.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field

REQUIRED_FIELDS = ("image", "question", "answer")
FALLBACK_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"


@dataclass
class Example:
    """One visual question: a PIL RGB image, the question, the answer, optional choices."""

    image: object
    question: str
    answer: str
    choices: list = field(default_factory=list)
    source: str = ""  # "file.jsonl:12" or "bundled:name[12]"

    def image_bytes(self):
        """Mode, size and raw pixels: what the sha256 of a data set covers."""
        img = self.image
        return f"{img.mode}{img.size}".encode() + img.tobytes()


@dataclass
class LoadReport:
    """What :func:`load_examples` skipped (``skip_bad=True``): ``(line, reason)`` pairs."""

    source: str
    skipped: list = field(default_factory=list)
    sha256: str = ""


def _bad(skipped, line, reason):
    skipped.append((line, reason))


def _open_image(path):
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def _verify_image(path):
    """Check that ``path`` is an image file PIL can read, without decoding its pixels."""
    from PIL import Image

    with Image.open(path) as img:
        img.verify()


def _check_limit(limit):
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be None or an integer >= 1, got {limit!r}")


def _check_record(record):
    """Why a parsed line is not an example, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        return "missing field" + ("s " if len(missing) > 1 else " ") + ", ".join(repr(m) for m in missing)
    for name in REQUIRED_FIELDS:
        if not isinstance(record[name], str) or not record[name].strip():
            return f"field {name!r} must be a non-empty string, got {record[name]!r}"
    choices = record.get("choices", [])
    if choices is None:
        choices = []
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        return f"field 'choices' must be a list of strings, got {choices!r}"
    return None


def load_jsonl(path, skip_bad=False, limit=None):
    """Examples of a JSONL file, with a :class:`LoadReport`.

    Every line is checked; bad lines (invalid JSON, missing or mistyped field, image
    that cannot be read) raise :class:`skipit.errors.SkipitError` listing all of them
    with line numbers, unless ``skip_bad`` (then they are skipped and listed in the
    report). Blank lines are ignored. With ``limit`` N, only the first N good lines
    are returned and only their images are decoded; the images of later lines are
    opened and verified (header and structure, ``PIL.Image.verify``), not decoded.
    """
    from skipit.errors import SkipitError

    _check_limit(limit)
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise SkipitError(f"cannot read data file {path}: {err.strerror or err}") from None
    examples, skipped = [], []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _bad(skipped, number, f"invalid JSON ({err.msg} at column {err.colno})")
            continue
        problem = _check_record(record)
        if problem:
            _bad(skipped, number, problem)
            continue
        image_path = record["image"] if os.path.isabs(record["image"]) else os.path.join(base, record["image"])
        wanted = limit is None or len(examples) < limit
        try:
            image = _open_image(image_path) if wanted else _verify_image(image_path)
        except Exception as err:  # PIL raises many kinds: all mean "unreadable image"
            _bad(skipped, number, f"unreadable image {record['image']!r} ({type(err).__name__}: {err})")
            continue
        if wanted:
            examples.append(Example(image, record["question"], record["answer"],
                                    list(record.get("choices") or []), source=f"{os.path.basename(path)}:{number}"))
    report = LoadReport(path, skipped, hashlib.sha256(raw).hexdigest())
    if skipped and not skip_bad:
        listing = "\n".join(f"  line {n}: {why}" for n, why in skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise SkipitError(f"{len(skipped)} bad line(s) in {path}:\n{listing}{more}\n"
                          "fix them, or pass --skip-bad to skip them")
    if not examples:
        raise SkipitError(f"no usable examples in {path}")
    return examples, report


def bundled_names():
    """Names of the bundled data sets (empty when the demo package is absent)."""
    try:
        from skipit.demo import BUNDLED_DATASETS
    except ImportError:
        return []
    return list(BUNDLED_DATASETS)


def _from_bundled(name, limit=None):
    from skipit.demo import BUNDLED_DATASETS, digit_image, digits_vqa_records

    records = digits_vqa_records(**BUNDLED_DATASETS[name])[:limit]
    return [Example(digit_image(rec["image_index"]).convert("RGB"), str(rec["question"]), str(rec["answer"]),
                    list(rec.get("choices") or []), source=f"bundled:{name}[{i}]")
            for i, rec in enumerate(records)]


def load_examples(path_or_name, skip_bad=False, limit=None):
    """Examples from a JSONL file or a bundled set name; returns ``(examples, report)``.

    A name that is not an existing file is looked up among the bundled sets
    (``skipit.demo.BUNDLED_DATASETS``); unknown names raise
    :class:`skipit.errors.SkipitError` listing the bundled ones. ``limit`` N keeps the
    first N examples and decodes only their images (a file's other lines are still
    checked, see :func:`load_jsonl`); a bundled set's report then hashes those N.
    """
    from skipit.errors import SkipitError

    _check_limit(limit)
    target = os.fspath(path_or_name)
    if os.path.exists(target):
        return load_jsonl(target, skip_bad=skip_bad, limit=limit)
    names = bundled_names()
    if target in names:
        examples = _from_bundled(target, limit)

        return examples, LoadReport(f"bundled:{target}", [], data_sha256(examples))
    known = ", ".join(names) if names else "none installed"
    raise SkipitError(f"--data {target!r} is neither a file nor a bundled data set (bundled: {known})")


# --------------------------------------------------------------------------------------
# prompts and batches
# --------------------------------------------------------------------------------------

def question_text(example):
    """The question as the model sees it: verbatim. ``choices`` are metadata (the allowed
    answers); a multiple-choice question states its options in its own text, as the
    bundled sets do (``which digit is shown? A) 3 B) 7 ...``)."""
    return example.question


def build_prompt(processor, example):
    """The prompt string: the processor's chat template when it has one (one user turn with
    the image then the question, generation prompt added), else ``USER: <image>\\n{question} ASSISTANT:``."""
    template = getattr(processor, "chat_template", None)
    if template is None:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    text = question_text(example)
    if template and hasattr(processor, "apply_chat_template"):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    image_prompt = getattr(processor, "image_prompt", None) or getattr(processor, "image_token", None) or "<image>"
    return FALLBACK_TEMPLATE.replace("<image>", image_prompt).format(question=text)


def build_inputs(processor, examples, model=None):
    """Model inputs (dict of tensors) for a batch of examples, padded to the longest prompt.

    Prompts end at the last prompt token (the answer position the statistics use).
    ``model`` lets families add what their forward needs (e.g. Qwen2.5-VL
    ``mm_token_type_ids``) via the adapter's ``extra_forward_kwargs``.
    """
    prompts = [build_prompt(processor, ex) for ex in examples]
    images = [ex.image for ex in examples]
    inputs = dict(processor(images=images, text=prompts, return_tensors="pt", padding=True))
    if model is not None:
        from skipit.empirical.adapters import get_adapter

        inputs.update(get_adapter(model).extra_forward_kwargs(inputs["input_ids"], model.config))
    return inputs


def data_sha256(examples):
    """sha256 of the examples' content (question, answer, choices, image pixels), order included."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.question, ex.answer, list(ex.choices or [])]).encode())
        h.update(ex.image_bytes())
    return h.hexdigest()
