"""Answers read from a greedy generation the way each benchmark's reference reads them.

A parser maps the generated text (and, for some, the row's option letters and texts) to the
answer that is scored and that certify's verification compares: an option letter, ``"yes"`` /
``"no"``, or a cleaned text. ``""`` means the reference would find no answer there (scored 0).
:data:`PARSERS` names them; each preset of :mod:`skipit.empirical.tasks` says which it uses.

Where a reference falls back to chance or to a judge model (MMBench's GPT matching, MMMU's random
letter), skipit returns ``""``: a run must be reproducible and certify compares answers exactly.
The table in ``tests/empirical/test_parsing.py`` pins each parser on the same inputs
(``"B."``, ``"B)"``, ``"(B)"``, ``"The answer is B"``, ``"**B**"``, ``"A cat is sitting"`` ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from skipit.empirical.metrics import mmmu_normalise, mmmu_open_candidates  # re-exported; their home is metrics

__all__ = ["PARSERS", "parse_answer", "check_parser", "read_answer", "reads_one_token", "mmmu_open_candidates",
           "mmmu_normalise"]


def _text(generated: str, letters: Sequence[str], options: Sequence[str]) -> str:
    """The generation, stripped (free-form answers; the metric normalises)."""
    return generated.strip()


def _raw(generated: str, letters: Sequence[str], options: Sequence[str]) -> str:
    """The generation exactly as decoded (ChartQA, DocVQA and GQA in lmms-eval score it unstripped:
    ANLS counts padding in the length, relaxed accuracy and exact match compare it as is)."""
    return generated


def _mmbench(generated, letters, options):
    """MMBench's rule-based matching (lmms-eval ``MMBench_Evaluator.can_infer``, from OpenCompass):
    over the whitespace-separated words, exactly one of ``A``-``E`` standing alone (unless ``A`` is
    there in an answer of more than 3 words: an article), else exactly one written ``B.``, ``B,``,
    ``B:``, ``B)``, ``B).``, ``(B)``, ``(B).``, ``:B``, ``:B,``, ``:B.``, ``:B)``, ``:B).``; else the
    one option whose text (lower-cased) is contained in the answer. The GPT fallback is not run."""
    words = [w.strip() for w in generated.split()]
    cands = "ABCDE"

    def count(prefix="", suffix=""):
        return sum(prefix + c + suffix in words for c in cands)

    if count() == 1 and not ("A" in words and len(words) > 3):
        return next(c for c in cands if c in words)
    for pre, suf in (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
                     (":", ""), (":", ","), (":", "."), (":", ")"), (":", ").")):
        if count(pre, suf) == 1:
            return next(c for c in cands if pre + c + suf in words)
    lowered = generated.lower()
    hits = [letter for letter, text in zip(letters, options) if str(text).lower() in lowered]
    return hits[0] if len(hits) == 1 else ""


_PHRASES = ("the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
            "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
            "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
            "i pick", "my answer is", "my choice is")
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
             "space": 2, "fallback": 0}


def _mcq_extract(generated, letters, options):
    """lmms-eval's ``extract_mcq_answer`` (``_task_utils/mcq_extract.py``; MMStar, RealWorldQA):
    candidates ``(B)``, ``B.``, ``B:``, ``B)``, ``B `` (last occurrence each), a letter after an answer
    phrase (``the answer is``), a leading or trailing letter not part of a word; the highest-priority
    format wins (start > end > phrase > parentheses > period > colon > right paren > space), then the
    later position; with none, any occurrence of a letter. Letters: ``letters`` (the reference
    passes ``A``-``D``). Note: it reads ``"A cat is sitting"`` as ``A`` (a leading letter not followed
    by a letter) -- the reference's behaviour, kept."""
    if not generated.strip():
        return ""
    text = generated.strip()
    for ch in ",.!?;:'\"":
        text = text.strip(ch)
    text = f" {text} "
    found = []
    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                         ("space", "{} ")):
        found += [(c, text.rfind(pattern.format(c)), fmt) for c in letters if pattern.format(c) in text]
    lowered = text.lower()
    for phrase in _PHRASES:
        at = lowered.find(phrase)
        if at != -1:
            found += [(c, text.find(c, at + len(phrase)), "phrase") for c in letters
                      if text.find(c, at + len(phrase)) != -1]
    core = text.strip()
    found += [(c, 0, "start") for c in letters if core.startswith(c) and (len(core) == 1 or not core[1].isalpha())]
    found += [(c, len(text) - 1, "end") for c in letters
              if core.endswith(c) and (len(core) == 1 or not core[-2].isalpha())]
    if not found:
        found = [(c, text.rfind(c), "fallback") for c in letters if c in text]
    if not found:
        return ""
    return max(found, key=lambda f: (_PRIORITY[f[2]], f[1]))[0]


def _ai2d(generated, letters, options):
    """lmms-eval AI2D's filter: a leading ``B.`` (``^\\s*([A-Z])\\.``) gives its letter, else the
    generation as it is (then scored by ``em-nopunct``: ``"(B)"`` and ``"**B**"`` equal ``B``)."""
    m = re.match(r"^\s*([A-Z])\.", generated)
    return m.group(1) if m else generated


def _scienceqa(generated, letters, options):
    """lmms-eval ``sqa_process_results`` ("how LLaVA parses it"): the stripped answer is the letter
    (any case), or starts with an upper-case letter and a period (``B. text``)."""
    pred = generated.strip()
    if len(pred) == 1 and pred.upper() in letters:
        return pred.upper()
    if len(pred) >= 2 and pred[0].isupper() and pred[1] == ".":
        return pred[0]
    return ""


def _scienceqa_llava(generated, letters, options):
    """LLaVA-1.5 ``eval_science_qa.py``: the answer is one of ``A``-``E``, or starts ``B. ``, or holds
    exactly one ``The answer is B.`` (any character after the letter)."""
    pred = generated.strip()
    if pred in "ABCDE" and len(pred) == 1:
        return pred
    if len(pred) >= 3 and pred[0] in "ABCDE" and pred[1:3] == ". ":
        return pred[0]
    found = re.findall(r"The answer is ([A-Z]).", pred)
    return found[0] if len(found) == 1 else ""


def _first_char(generated, letters, options):
    """lmms-eval SEED-Bench (``seed_process_result``): the first character of the stripped answer."""
    return generated.strip()[:1]


def _pope(generated, letters, options):
    """lmms-eval POPE: the whole answer lower-cased and stripped (``"Yes."`` is not ``"yes"``)."""
    return generated.lower().strip()


def _pope_llava(generated, letters, options):
    """LLaVA-1.5 ``eval_pope.py``: the first sentence (up to the first ``.``), commas removed; ``no``
    when a space-separated word is ``No``, ``no`` or ``not``, else ``yes``."""
    text = generated.split(".")[0] if "." in generated else generated
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def _mme(generated, letters, options):
    """MME (lmms-eval ``parse_pred_ans``, "brought from Otter"): lower-cased, stripped, periods
    removed; ``yes``/``no`` as is; one character ``y``/``n``; else ``yes`` or ``no`` within the
    first 4 characters (``yes`` checked first); else ``other``."""
    pred = generated.lower().strip().replace(".", "")
    if pred in ("yes", "no"):
        return pred
    if len(pred) == 1:
        return {"y": "yes", "n": "no"}.get(pred, "other")
    head = pred[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def _mmmu_choice(generated, letters, options):
    """MMMU's ``parse_multi_choice_response`` (lmms-eval ``_task_utils/mmmu_mcq_utils.py``): the answer
    stripped of ``,.!?;:'`` and padded with spaces; candidates ``(B)``, else ``B `` , else ``B.``, else
    (answers of more than 5 words) options whose text appears; several candidates: the last
    occurring. No candidate: ``""`` (deliberate: the reference draws a random letter)."""
    response = generated
    for ch in ",.!?;:'":
        response = response.strip(ch)
    response = f" {response} "
    by_index, bracket = True, False
    cands = [c for c in letters if f"({c})" in response]
    bracket = bool(cands)
    if not cands:
        cands = [c for c in letters if f"{c} " in response]
    if not cands:
        cands = [c for c in letters if f"{c}." in response]
    if not cands and len(response.split()) > 5:
        cands = [c for c, text in zip(letters, options) if str(text).lower() in response.lower()]
        by_index = False
    if not cands:
        return ""
    if len(cands) == 1:
        return cands[0]
    if not by_index:
        where = [response.lower().rfind(str(options[letters.index(c)]).lower()) for c in cands]
    elif bracket:
        where = [response.rfind(f"({c})") for c in cands]
    else:
        where = [response.rfind(f" {c} ") for c in cands]
    return cands[max(range(len(cands)), key=lambda i: (where[i], -i))]


def _lower_no_period(generated, letters, options):
    """lmms-eval RealWorldQA's open rows: lower-cased, stripped, trailing periods removed."""
    return generated.lower().strip().rstrip(".")


def _evalai(generated, letters, options):
    """LLaVA-1.5 ``scripts/convert_vqav2_for_submission.py``: the EvalAI answer processor
    (:func:`skipit.empirical.metrics.evalai_process`) before the answer is submitted."""
    from skipit.empirical.metrics import evalai_process

    return evalai_process(generated)


def _gqa_llava(generated, letters, options):
    """LLaVA-1.5 ``scripts/convert_gqa_for_eval.py``: trailing periods removed, lower-cased (of the
    stripped answer, as ``model_vqa_loader`` strips it)."""
    return generated.strip().rstrip(".").lower()


PARSERS: dict[str, Callable[[str, Sequence[str], Sequence[str]], str]] = {
    "text": _text, "raw": _raw, "mmbench": _mmbench, "mcq-extract": _mcq_extract, "ai2d": _ai2d,
    "scienceqa": _scienceqa,
    "scienceqa-llava": _scienceqa_llava, "first-char": _first_char, "pope": _pope, "pope-llava": _pope_llava,
    "mme": _mme, "mmmu-choice": _mmmu_choice, "lower-no-period": _lower_no_period, "gqa-llava": _gqa_llava,
    "evalai": _evalai,
}


def check_parser(name: str) -> str:
    """``name`` if it is one of :data:`PARSERS`, else ``ValueError`` naming them."""
    if name not in PARSERS:
        raise ValueError(f"`parser` must be one of {', '.join(PARSERS)}, got {name!r}")
    return name


def parse_answer(parser: str, generated: str, letters: Sequence[str] = (), options: Sequence[str] = ()) -> str:
    """The answer ``parser`` reads from ``generated``; ``letters`` are the row's option letters
    (``A``, ``B`` ...), ``options`` their texts (same order). ``""``: no answer found."""
    return PARSERS[check_parser(parser)](str(generated), list(letters), list(options))


def reads_one_token(example, metric: str | None = None) -> bool:
    """Whether ``example`` is answered by its first token alone: a ``letter`` example without a parser
    (the paper's one-token answer, ``--answer one-token``); every other example reads its generation."""
    return (metric or example.metric or "letter") == "letter" and not getattr(example, "parser", "")


def read_answer(example, generated: str, metric: str | None = None) -> str:
    """The answer scored and compared (certify's verification, evaluate's change rate) for one
    generation: the example's parser applied (:func:`parse_answer`), then normalised for its metric
    (:func:`skipit.empirical.metrics.normalise_for`)."""
    from skipit.empirical.metrics import normalise_for

    parser = getattr(example, "parser", "")
    text = parse_answer(parser, generated, example.choices, getattr(example, "options", ())) if parser else generated
    return normalise_for(metric or example.metric or "letter", text)
