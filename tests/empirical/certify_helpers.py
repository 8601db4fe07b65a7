"""Small real data for the certify tests: sklearn digit images as examples and as JSONL."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from skipit.empirical.data import Example

QUESTIONS = ("which digit is shown?", "is the digit even?", "is the digit greater than 4?")


def _digit(index):
    from sklearn.datasets import load_digits

    images = load_digits().images
    return Image.fromarray(np.rint(images[index] * 255.0 / 16.0).astype(np.uint8), mode="L")


def digit_examples(n, offset=0):
    """``n`` examples over digit images ``offset..offset+n-1`` with questions of different lengths."""
    return [Example(_digit(offset + i).convert("RGB"), QUESTIONS[i % 3], "yes", source=f"digits[{offset + i}]")
            for i in range(n)]


def write_digit_jsonl(directory, n, extra_lines=()):
    """A JSONL file of ``n`` digit examples in ``directory`` (images under ``img/``); ``extra_lines``
    (strings) are appended verbatim. Returns the path."""
    os.makedirs(os.path.join(directory, "img"), exist_ok=True)
    path = os.path.join(directory, "data.jsonl")
    with open(path, "w") as fh:
        for i in range(n):
            _digit(i).save(os.path.join(directory, "img", f"{i}.png"))
            fh.write(json.dumps({"image": f"img/{i}.png", "question": QUESTIONS[i % 3], "answer": "yes"}) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return path
