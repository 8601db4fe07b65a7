"""The language of the default demo model (``demo``): number words, visual questions and a text corpus.

One family of questions exists in three forms, so that what the decoder learns on text is what
the visual questions need:

* **explicit text** (pretraining): the number is written in the question,
  ``what is seven plus three?`` -> ``ten``;
* **text with a context** (pretraining): a sentence states the number and the question refers to
  it, ``the digit is seven. what is the digit plus three?`` -> ``ten``;
* **visual** (alignment and tuning): the image replaces the context,
  ``<image> what is the digit plus three?`` -> ``ten``.

Numbers are words (``zero`` ... ``eighteen``); a negative result is two words (``minus three``).
Every answer ends with the end-of-sequence token when the model is trained; the bundled sets
score one-word answers by their first token (``letter``) and the others by greedy generation
(``exact``).
"""

from __future__ import annotations

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen")
"""The numbers 0..18 as words, one token each (18 = 9 + 9 is the largest sum asked)."""
LETTERS = ("A", "B", "C", "D")
VISUAL_TYPES = ("digit", "even", "greater", "choice", "plus", "minus", "larger", "sum_greater")
"""Question types about a digit image; the first four are the dense demo's, in words."""
MULTI_WORD_TYPES = ("minus", "larger")
"""Types whose answer can be several words (``minus three``, ``the digit``): scored by generation."""
TEXT_TYPES = (*VISUAL_TYPES, "count", "repeat", "chain")
"""Text-only question types of the pretraining corpus (the visual ones with the number written
out, plus counting, copying and two-step arithmetic)."""
SUBJECT = "the digit"
WORDS = (
    "USER", ":", "ASSISTANT", "what", "which", "is", "the", "digit", "shown", "?", "even", "greater",
    "than", "plus", "minus", "larger", ",", "or", "yes", "no", ")", ".", "how", "many", "times", "in",
    "repeat", *NUMBER_WORDS, *LETTERS,
)
"""The tokenizer's words (besides the special tokens)."""


def number(value: int) -> str:
    """``value`` in words: ``7`` -> ``"seven"``, ``-3`` -> ``"minus three"`` (|value| <= 18)."""
    if not -18 <= value <= 18:
        raise ValueError(f"`value` must be in -18..18, got {value}")
    return NUMBER_WORDS[value] if value >= 0 else f"minus {NUMBER_WORDS[-value]}"


def question(qtype: str, value: int, rng: np.random.Generator, subject: str = SUBJECT) -> dict:
    """One question of type ``qtype`` about the number ``value`` (0..9), referred to as ``subject``.

    ``subject`` is ``"the digit"`` for a visual question or one with a context, or the number
    word itself for explicit text. Returns ``{"question", "answer", "choices"}``; ``choices`` is
    the list of letters for ``choice`` and None otherwise.
    """
    explicit = subject != SUBJECT
    if qtype == "digit":
        q = f"which is {subject}?" if explicit else "which digit is shown?"
        return {"question": q, "answer": number(value), "choices": None}
    if qtype == "even":
        return {"question": f"is {subject} even?", "answer": "yes" if value % 2 == 0 else "no", "choices": None}
    if qtype == "greater":
        k = int(rng.integers(0, 9))
        return {"question": f"is {subject} greater than {number(k)}?", "answer": "yes" if value > k else "no",
                "choices": None}
    if qtype == "choice":
        others = rng.choice([d for d in range(10) if d != value], size=3, replace=False)
        options = [int(value), *map(int, others)]
        rng.shuffle(options)
        text = " ".join(f"{letter}) {number(d)}" for letter, d in zip(LETTERS, options))
        head = f"which is {subject}?" if explicit else "which digit is shown?"
        return {"question": f"{head} {text}", "answer": LETTERS[options.index(int(value))],
                "choices": list(LETTERS)}
    if qtype == "plus":
        k = int(rng.integers(0, 10))
        return {"question": f"what is {subject} plus {number(k)}?", "answer": number(value + k), "choices": None}
    if qtype == "minus":
        k = int(rng.integers(0, 10))
        return {"question": f"what is {subject} minus {number(k)}?", "answer": number(value - k), "choices": None}
    if qtype == "larger":
        k = int(rng.choice([d for d in range(10) if d != value]))
        return {"question": f"which is larger, {subject} or {number(k)}?",
                "answer": subject if value > k else number(k), "choices": None}
    if qtype == "sum_greater":
        k = int(rng.integers(1, 10))
        m = int(np.clip(value + k + rng.integers(-2, 2), 0, 18))
        return {"question": f"is {subject} plus {number(k)} greater than {number(m)}?",
                "answer": "yes" if value + k > m else "no", "choices": None}
    raise ValueError(f"`qtype` must be one of {VISUAL_TYPES}, got {qtype!r}")


def text_document(qtype: str, rng: np.random.Generator) -> dict:
    """One text-only question of the pretraining corpus: ``{"context", "question", "answer"}``.

    A visual type is asked with its number written out (``context`` empty) or, half the time, with
    a context sentence ``the digit is X.`` that the question refers to. ``count`` (how many times a
    number word occurs in a list), ``repeat`` (copy two to four words) and ``chain`` (``X plus Y
    minus Z``) are text only.
    """
    value = int(rng.integers(0, 10))
    if qtype in VISUAL_TYPES:
        if rng.random() < 0.5:
            return {"context": f"the digit is {number(value)}.", **question(qtype, value, rng)}
        return {"context": "", **question(qtype, value, rng, subject=number(value))}
    if qtype == "count":
        n = int(rng.integers(2, 7))
        words = rng.integers(0, 4, size=n)
        target = int(rng.integers(0, 4))
        listed = " ".join(number(int(w)) for w in words)
        return {"context": "", "question": f"how many times is {number(target)} in {listed}?",
                "answer": number(int((words == target).sum())), "choices": None}
    if qtype == "repeat":
        words = " ".join(number(int(w)) for w in rng.integers(0, 10, size=int(rng.integers(2, 5))))
        return {"context": "", "question": f"repeat {words}", "answer": words, "choices": None}
    if qtype == "chain":
        a, b, c = (int(x) for x in rng.integers(0, 10, size=3))
        return {"context": "", "question": f"what is {number(a)} plus {number(b)} minus {number(c)}?",
                "answer": number(a + b - c), "choices": None}
    raise ValueError(f"`qtype` must be one of {TEXT_TYPES}, got {qtype!r}")
