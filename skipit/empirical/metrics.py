"""Answer normalisation and the scores of visual question answering, each as its reference computes it.

Pure Python (no torch): a prediction is a string (already read from the generation by its task's
parser, :mod:`skipit.empirical.parsing`), the references are strings.

* ``letter`` (the paper's scoring, Sec. 4.2): the answer, reduced to lower-case letters and digits,
  equals the reference's (the option letter of a multiple-choice question, or a one-word answer).
  A gold letter stays a letter: ``"A"`` is ``"a"``, never the empty string.
* ``exact``: the VQA-normalised answer equals a VQA-normalised reference (:func:`normalise_vqa`);
  a text the normalisation empties (``"A"``, ``"the"``) is compared by its letters and digits instead.
* ``vqa``: the VQA accuracy of the official script (Antol et al., ICCV 2015; GT-Vision-Lab/VQA
  ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``): :func:`vqa_score`.
* ``vqa-evalai``: the VQA accuracy after the EvalAI answer processor on both sides (lmms-eval's TextVQA
  and VizWiz-VQA tasks; LLaVA-1.5's ``m4c_evaluator.py``): :func:`vqa_evalai_score`.
* ``vqa-lmms``: the VQA accuracy of lmms-eval's VQAv2 task (punctuation and digit/article
  processing on both sides, always): :func:`vqa_lmms_score`.
* ``anls``: average normalised Levenshtein similarity as the DocVQA / ST-VQA script computes it:
  :func:`anls_score`.
* ``relaxed``: ChartQA's relaxed accuracy (5 % relative tolerance for numbers): :func:`relaxed_score`.
* ``contains`` / ``contains-nospace``: OCRBench's containment (:func:`contains_score`; HME100k rows
  compare without spaces).
* ``match``: the parsed answer equals a reference after ``strip().lower()`` (POPE, MME, SEED-Bench,
  RealWorldQA's open rows, GQA as LLaVA scores it).
* ``em-nopunct``: lm-eval's ``exact_match`` with ``ignore_case`` and ``ignore_punctuation`` (AI2D, ScienceQA
  and GQA in lmms-eval): lower case, ``string.punctuation`` deleted, then equality (no strip).
* ``mmmu-open``: MMMU's open-question rule (``eval_open`` over ``parse_open_response``): :func:`mmmu_open_score`.

:func:`mme_score` is MME's own sum (accuracy + accuracy+ per category). Deliberate differences from
a reference are stated at the function and pinned by ``tests/empirical/test_metrics.py``.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence

__all__ = [
    "METRICS", "ANLS_THRESHOLD", "RELAXED_TOLERANCE", "normalise_answer", "normalise_vqa", "evalai_process",
    "letter_score", "exact_score", "vqa_score", "vqa_evalai_score", "vqa_lmms_score", "anls_score",
    "relaxed_score", "contains_score", "match_score", "em_nopunct_score", "mmmu_open_score", "mme_score",
    "score_one", "check_metric", "normalise_for", "mmmu_normalise", "mmmu_open_candidates",
]

ANLS_THRESHOLD = 0.5
"""ANLS keeps a similarity >= 0.5 (DocVQA: ``if question_result < threshold: 0``): inclusive at 0.5."""
RELAXED_TOLERANCE = 0.05
"""ChartQA's relaxed accuracy: a number within 5 % of the gold (``<=``, relative to the gold)."""

# The official VQA evaluation's normalisation tables (vqaEval.py, VQA API): words without their
# apostrophe are mapped to the contraction, number words to digits; articles are dropped.
_CONTRACTIONS = dict(pair.split("=") for pair in (
    "aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've "
    "couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've "
    "hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's "
    "howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd "
    "itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've "
    "mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've "
    "oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't "
    "shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't "
    "shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've "
    "somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd "
    "someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's "
    "somethingd=something'd somethingd've=something'd've something'dve=something'd've "
    "somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've "
    "therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll "
    "theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've "
    "werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd "
    "wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's "
    "whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't "
    "wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll "
    "yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've "
    "you'dve=you'd've youll=you'll youre=you're youve=you've").split())
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = frozenset(("a", "an", "the"))
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                ",", "?", "!"]
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: the official look-behind typo, kept for parity
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
_OFFICIAL_PERIOD_COUNT = re.UNICODE
"""sic: the official ``periodStrip.sub("", outText, re.UNICODE)`` passes the flag as ``count`` (32):
only the first 32 periods are removed. Kept for parity."""


def normalise_answer(text: object) -> str:
    """Lower case, letters and digits only: ``" Yes."`` -> ``"yes"``, ``"(B)"`` -> ``"b"``.

    The comparison of the one-token (``letter``) score.
    """
    return re.sub(r"[^0-9a-z]", "", str(text).lower())


def _punctuation(text, comma_strip=None):
    """The official ``processPunctuation``; ``comma_strip`` is the digit-comma pattern (EvalAI's differs)."""
    out = text
    comma_strip = comma_strip or _COMMA_STRIP
    for p in _PUNCTUATION:
        if (p + " " in text or " " + p in text) or comma_strip.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, _OFFICIAL_PERIOD_COUNT)


def _digits_and_articles(text):
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalise_vqa(text: str) -> str:
    """The official VQA answer normalisation: newlines and tabs to spaces, punctuation removed
    (or made a space where it joins two words), periods not inside a number dropped, lower case,
    number words to digits (``"two"`` -> ``"2"``), articles dropped, apostrophe-less contractions
    restored (``"dont"`` -> ``"don't"``); whitespace collapsed.

    ``normalise_vqa("The Two dogs.")`` is ``"2 dogs"``; ``normalise_vqa("1,000")`` is ``"1000"``.
    """
    text = str(text).replace("\n", " ").replace("\t", " ").strip()
    return " ".join(_digits_and_articles(_punctuation(text)).split())


def letter_score(prediction: str, references: Iterable[str]) -> float:
    """1.0 when the answer's letters and digits (:func:`normalise_answer`) equal a reference's,
    neither empty: ``"(B)."`` scores 1 against ``"B"``; ``""`` scores 0 against anything."""
    pred = normalise_answer(prediction)
    return float(bool(pred) and any(pred == normalise_answer(r) for r in references))


def _exact_key(text):
    """:func:`normalise_vqa`, or the letters and digits when that normalisation empties a non-empty
    text (a gold letter ``"A"``, ``"The"``): a letter is never the empty string."""
    return normalise_vqa(text) or normalise_answer(text)


def exact_score(prediction: str, references: Iterable[str]) -> float:
    """1.0 when the normalised answer equals a normalised reference (:func:`_exact_key`).

    Deliberate difference from the VQA normalisation alone: ``"A"`` normalises to ``"a"``, not
    ``""``, so an empty or article-only answer no longer equals the gold letter ``"A"``."""
    pred = _exact_key(prediction)
    return float(bool(pred) and any(pred == _exact_key(r) for r in references))


def _leave_one_out(pred, refs):
    """Mean over the references of ``min(1, #other references equal to pred / 3)``."""
    return sum(min(1.0, sum(o == pred for j, o in enumerate(refs) if j != i) / 3) for i in range(len(refs))) / len(refs)


def _check_references(refs):
    if not refs:
        raise ValueError("`references` must not be empty, got []")


def _clean_lines(text):
    return str(text).replace("\n", " ").replace("\t", " ").strip()


def vqa_score(prediction: str, references: Iterable[str]) -> float:
    """The VQA accuracy as the official script computes it (GT-Vision-Lab/VQA ``vqaEval.py``).

    The prediction gets ``processPunctuation`` and ``processDigitArticle`` (:func:`normalise_vqa`);
    the references get ``processPunctuation`` only (not stripped, not lower-cased), and only when
    they are not all the same string (ten identical references are compared as written); then
    the mean over the leave-one-out subsets of ``min(#matches / 3, 1)``: 4 or more matches of 10
    give 1.0, 3 give 0.9, 2 give 0.6, 1 gives 0.3.

    Deliberate differences: with one reference the score is exact match (the script's
    leave-one-out gives 0 for any answer); a prediction the processing empties (``"A"``) is
    compared as written, so the gold letter ``"A"`` can be matched.
    """
    raw = [str(r) for r in references]  # the script neither strips nor otherwise touches the references
    _check_references(raw)
    pred = normalise_vqa(prediction) or _clean_lines(prediction)
    refs = [_punctuation(r) for r in raw] if len(set(raw)) > 1 else raw
    if len(refs) == 1:
        return float(pred == refs[0] or pred == normalise_vqa(refs[0]))
    return _leave_one_out(pred, refs)


def evalai_process(text: str) -> str:
    """The EvalAI answer processor (lmms-eval ``EvalAIAnswerProcessor``, LLaVA ``m4c_evaluator.py``):
    lower case, commas and ``?`` deleted, ``'s`` split off (``"dog's"`` -> ``"dog 's"``), then the
    official punctuation and digit/article processing. ``"red,white"`` -> ``"redwhite"``."""
    text = str(text).lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = _clean_lines(text)
    return _digits_and_articles(_punctuation(text, _EVALAI_COMMA_STRIP))


def vqa_evalai_score(prediction: str, references: Iterable[str]) -> float:
    """VQA accuracy with :func:`evalai_process` on the prediction and on every reference, always
    (lmms-eval ``textvqa_process_results`` / ``vizwiz_vqa_process_results``; LLaVA's TextVQA
    evaluator). ``"red,white"`` scores 0 against ten ``"red white"``.

    Deliberate differences: one reference is exact match (leave-one-out would give 0); a prediction
    the processor empties is compared as written (lower-cased)."""
    refs = [evalai_process(r) for r in references]
    _check_references(refs)
    pred = evalai_process(prediction) or _clean_lines(prediction).lower()
    return float(pred == refs[0]) if len(refs) == 1 else _leave_one_out(pred, refs)


def vqa_lmms_score(prediction: str, references: Iterable[str]) -> float:
    """VQA accuracy as lmms-eval's VQAv2 task computes it (``vqav2_process_results``): newlines and
    tabs to spaces, strip, then ``process_punctuation`` and ``process_digit_article`` on the prediction
    and on every reference, always (no identical-references rule, no comma deletion).

    Deliberate differences: as :func:`vqa_evalai_score`."""
    refs = [normalise_vqa(r) for r in references]
    _check_references(refs)
    pred = normalise_vqa(prediction) or _clean_lines(prediction).lower()
    return float(pred == refs[0]) if len(refs) == 1 else _leave_one_out(pred, refs)


def _levenshtein(a, b):
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls_score(prediction: str, references: Iterable[str], threshold: float = ANLS_THRESHOLD) -> float:
    """ANLS of one answer as the DocVQA script computes it (lmms-eval ``metrics.anls``).

    For each reference, ``NL = levenshtein(p, r) / max(len(P), len(R))``: the distance between
    the stripped, lower-cased, whitespace-collapsed strings ``p``, ``r``, over the length of the
    RAW upper-cased strings ``P = prediction.upper()``, ``R = reference.upper()`` (padding counts
    in the length; 0 when both are empty). The score is ``1 - min NL``, set to 0 when it is below
    ``threshold`` (0.5 is kept: ``"13"`` against ``"12"`` scores 0.5). ``anls("abcd", ["abc"])``
    is 0.75: the longer string's length divides.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold}")
    refs = [str(r) for r in references]
    _check_references(refs)
    pred = str(prediction)
    det = " ".join(pred.strip().lower().split())
    values = []
    for ref in refs:
        gt = " ".join(ref.strip().lower().split())
        length = max(len(ref.upper()), len(pred.upper()))
        values.append(0.0 if length == 0 else _levenshtein(gt, det) / length)
    result = 1.0 - min(values)
    return 0.0 if result < threshold else result


def _to_float(text):
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_score(prediction: str, references: Iterable[str], tolerance: float = RELAXED_TOLERANCE) -> float:
    """ChartQA's relaxed accuracy (Masry et al. 2022, Sec. 5.1; lmms-eval ``relaxed_correctness``):
    when the prediction and a non-zero gold both read as numbers (``"12%"`` is 0.12), correct when
    ``|pred - gold| / |gold| <= tolerance``; otherwise case-insensitive string equality
    (``"1,000"`` is not a number). Best over the references."""
    refs = [str(r) for r in references]
    _check_references(refs)
    pred = str(prediction)
    best = 0.0
    for ref in refs:
        p, g = _to_float(pred), _to_float(ref)
        ok = abs(p - g) / abs(g) <= tolerance if (p is not None and g) else pred.lower() == ref.lower()
        best = max(best, float(ok))
    return best


def _fold_fullwidth(text):
    return "".join(" " if c == "\u3000" else chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)


def _contains_key(text, nospace=False):
    if nospace:
        return str(text).strip().replace("\n", " ").replace(" ", "")
    return _fold_fullwidth(str(text)).lower().strip().replace("\n", " ")


def contains_score(prediction: str, references: Iterable[str], nospace: bool = False) -> float:
    """OCRBench (lmms-eval ``ocrbench_process_results``): 1 when a reference is contained in the
    prediction, both full-width ASCII folded, lower-cased and stripped, newlines as spaces;
    ``nospace`` (the HME100k rows): all spaces removed, case kept."""
    refs = [_contains_key(r, nospace) for r in references]
    _check_references(refs)
    pred = _contains_key(prediction, nospace)
    return float(any(r in pred for r in refs))


def match_score(prediction: str, references: Iterable[str]) -> float:
    """1.0 when the parsed answer equals a reference after ``strip().lower()`` (and neither is empty)."""
    pred = str(prediction).strip().lower()
    return float(bool(pred) and any(pred == str(r).strip().lower() for r in references))


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def em_nopunct_score(prediction: str, references: Iterable[str]) -> float:
    """lm-eval's ``exact_match`` with ``ignore_case`` and ``ignore_punctuation``: both lower-cased,
    every ``string.punctuation`` character deleted, then equality (whitespace kept, as there)."""
    pred = str(prediction).lower().translate(_NO_PUNCTUATION)
    return float(any(pred == str(r).lower().translate(_NO_PUNCTUATION) for r in references))


# --------------------------------------------------------------------------------------------
# MMMU open questions (MMMU-Benchmark eval_utils: parse_open_response, normalize_str)
# --------------------------------------------------------------------------------------------

_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_NUMBERS = (re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"), re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),
            re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])"))


def mmmu_normalise(text: str) -> list:
    """MMMU ``normalize_str``: a number (commas dropped) as a float rounded to 2 decimals; else the
    lower-cased string, a single character padded both ways (``[" a", "a "]``) to avoid trivial matches."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [" " + text, text + " "] if len(text) == 1 else [text]


def mmmu_open_candidates(generated: str) -> list:
    """MMMU ``parse_open_response``: the key sub-responses (the shortest tail after an indicator such as
    ``is ``, ``so ``, ``therefore ``; ``=`` in the last sentence), the numbers in them, all normalised
    (:func:`mmmu_normalise`), duplicates removed (first occurrence kept, so the result is ordered)."""
    response = generated.strip().strip(".").lower()
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for i, part in enumerate(parts):
        indicators = _INDICATORS + (("=",) if i == len(parts) - 1 else ())
        tails = [part.split(ind)[-1].strip() for ind in indicators if ind in part]
        shortest = min(tails, key=len) if tails else None
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    keys = keys or [response]
    found = list(keys)
    for key in keys:
        for pattern in _NUMBERS:
            found += pattern.findall(key)
    out = []
    for item in found:
        for norm in mmmu_normalise(item):
            if norm not in out:
                out.append(norm)
    return out


def mmmu_open_score(prediction: str, references: Iterable[str]) -> float:
    """MMMU's open-question rule (MMMU-Benchmark ``eval_utils.eval_open``): the prediction parsed into
    candidate strings and numbers (:func:`mmmu_open_candidates`); correct when
    a normalised gold number equals a candidate number or a normalised gold string is contained in a
    candidate string.

    Deliberate difference: lmms-eval's ``mmmu_process_results`` keeps only the first element of the
    (unordered) candidate set as a string, so its ``eval_open`` iterates that string's characters; skipit
    follows MMMU's own evaluation over all candidates."""
    golds = []
    for r in references:
        golds += mmmu_normalise(str(r))
    for cand in mmmu_open_candidates(str(prediction)):
        if isinstance(cand, str):
            if any(isinstance(g, str) and g in cand for g in golds):
                return 1.0
        elif cand in golds:
            return 1.0
    return 0.0


def mme_score(scores: Sequence[float], categories: Sequence[str], images: Sequence[str]) -> dict[str, float]:
    """MME's own score (lmms-eval ``mme_aggregate_results``, MME's ``calculation.py``): per category,
    the mean over its images of ``acc + acc+`` (acc: percent of the image's two questions right;
    acc+: 100 when both are), summed over the categories of perception and of cognition.

    ``scores`` are the 0/1 per question, ``categories`` and ``images`` (the ``question_id``, one per
    image pair) name where each belongs. Returns ``{"perception": .., "cognition": .., "total": ..}``;
    perception's maximum is 2000 (10 categories), cognition's 800 (4)."""
    if not len(scores) == len(categories) == len(images):
        raise ValueError(f"`scores`, `categories` and `images` must have one entry per question, got "
                         f"{len(scores)}, {len(categories)}, {len(images)}")
    pairs: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s, c, i in zip(scores, categories, images):
        pairs[c][i].append(float(s))
    totals = {"perception": 0.0, "cognition": 0.0}
    for category, by_image in pairs.items():
        for image, got in by_image.items():
            if len(got) != 2:
                raise ValueError(f"MME scores image pairs: image {image!r} of {category!r} has {len(got)} "
                                 "question(s), expected 2")
        mean = sum(sum(g) / 2 * 100 + (sum(g) == 2) * 100 for g in by_image.values()) / len(by_image)
        totals["cognition" if category in MME_COGNITION else "perception"] += mean
    totals["total"] = totals["perception"] + totals["cognition"]
    return totals


MME_COGNITION = frozenset(("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"))
"""MME's cognition categories (lmms-eval ``eval_type_dict``); every other category is perception."""

_SCORERS = {
    "letter": letter_score, "exact": exact_score, "vqa": vqa_score, "vqa-evalai": vqa_evalai_score,
    "vqa-lmms": vqa_lmms_score, "anls": anls_score, "relaxed": relaxed_score, "contains": contains_score,
    "contains-nospace": lambda p, r: contains_score(p, r, nospace=True), "match": match_score,
    "em-nopunct": em_nopunct_score, "mmmu-open": mmmu_open_score,
}
METRICS = tuple(_SCORERS)
"""Metric names an example can be scored with (``--metric``; ``auto`` is resolved in :mod:`skipit.empirical.data`)."""


def check_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`METRICS`, else ``ValueError`` naming them."""
    if metric not in _SCORERS:
        raise ValueError(f"`metric` must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def score_one(prediction: str, references: Iterable[str], metric: str) -> float:
    """The score in [0, 1] of one prediction against its references under ``metric``."""
    return _SCORERS[check_metric(metric)](prediction, list(references))


def normalise_for(metric: str, text: str) -> str:
    """An answer as ``metric`` compares it, so that two answers with equal normalised forms score
    alike against any references, and scoring the normalised answer gives the raw one's score:
    :func:`normalise_answer` for ``letter``; :func:`_exact_key` for ``exact``; :func:`normalise_vqa`
    (or the text itself when that empties it) for ``vqa`` and ``vqa-lmms``; :func:`evalai_process`
    for ``vqa-evalai``; the containment key for ``contains``; ``strip().lower()`` for ``match``; the
    text unchanged for ``anls`` (raw lengths count), ``relaxed``, ``em-nopunct`` and ``mmmu-open``."""
    check_metric(metric)
    text = str(text)
    if metric == "letter":
        return normalise_answer(text)
    if metric == "exact":
        return _exact_key(text)
    if metric in ("vqa", "vqa-lmms"):
        return normalise_vqa(text) or _clean_lines(text)
    if metric == "vqa-evalai":
        return evalai_process(text) or _clean_lines(text).lower()
    if metric in ("contains", "contains-nospace"):
        return _contains_key(text, metric == "contains-nospace")
    if metric == "match":
        return text.strip().lower()
    return text
