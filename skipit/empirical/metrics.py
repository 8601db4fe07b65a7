"""Answer normalisation and the scores of visual question answering: letter, exact, VQA, ANLS.

Pure Python (no torch): a prediction is a string, the references are strings.

* ``letter`` (the paper's scoring, Sec. 4.2): the first answer token, normalised to lower-case
  letters and digits, equals the answer (the option letter of a multiple-choice question, or
  a one-word answer).
* ``exact``: the normalised generated answer equals a normalised reference.
* ``vqa``: the VQA accuracy (Antol et al., ICCV 2015; the official VQAv2 evaluation,
  ``vqaEval.py``): ``min(#references equal to the answer / 3, 1)``, averaged over the 10
  leave-one-out subsets of 9 of the 10 references, after the official normalisation
  (:func:`normalise_vqa`). With one reference it is exact match.
* ``anls``: average normalised Levenshtein similarity (Biten et al., ICCV 2019, ST-VQA; used
  by DocVQA): ``max over references of 1 - NL`` where ``NL`` is the Levenshtein distance over
  the longer length of the lower-cased, whitespace-collapsed strings, and 0 when
  ``NL >= 0.5`` (the threshold ``ANLS_THRESHOLD``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "METRICS", "ANLS_THRESHOLD", "normalise_answer", "normalise_vqa", "letter_score", "exact_score",
    "vqa_score", "anls_score", "score_one", "check_metric", "normalise_for",
]

METRICS = ("letter", "exact", "vqa", "anls")
"""Metric names a data set can be scored with (``--metric``; ``auto`` is resolved in ``data.py``)."""
ANLS_THRESHOLD = 0.5

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


def normalise_answer(text: object) -> str:
    """Lower case, letters and digits only: ``" Yes."`` -> ``"yes"``, ``"(B)"`` -> ``"b"``.

    The comparison of the one-token (``letter``) score.
    """
    return re.sub(r"[^0-9a-z]", "", str(text).lower())


def _punctuation(text):
    out = text
    for p in _PUNCTUATION:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


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
    """1.0 when the normalised prediction (:func:`normalise_answer`) equals a non-empty normalised reference."""
    pred = normalise_answer(prediction)
    return float(bool(pred) and any(pred == normalise_answer(r) for r in references))


def exact_score(prediction: str, references: Iterable[str]) -> float:
    """1.0 when the VQA-normalised prediction equals a VQA-normalised reference (:func:`normalise_vqa`)."""
    pred = normalise_vqa(prediction)
    return float(any(pred == normalise_vqa(r) for r in references))


def vqa_score(prediction: str, references: Iterable[str]) -> float:
    """VQA accuracy: mean over the leave-one-out subsets of ``min(#matches / 3, 1)``.

    With n references (10 in VQAv2 and TextVQA), each subset drops one reference and counts
    the others equal to the normalised prediction. 4 or more matches of 10 give 1.0; 3 give
    ``(7 * 1 + 3 * 2/3) / 10 = 0.9``; 2 give ``(8 * 2/3 + 2 * 1/3) / 10 = 0.6``; 1 gives
    ``9/10 * 1/3 = 0.3``.
    """
    refs = [normalise_vqa(r) for r in references]
    if not refs:
        raise ValueError("`references` must not be empty, got []")
    pred = normalise_vqa(prediction)
    if len(refs) == 1:
        return float(pred == refs[0])
    matches = sum(r == pred for r in refs)
    total = 0.0
    for r in refs:
        total += min(1.0, (matches - (r == pred)) / 3)
    return total / len(refs)


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
    """ANLS of one answer: ``max over references of (1 - NL if NL < threshold else 0)``.

    ``NL = levenshtein(p, r) / max(len(p), len(r))`` on lower-cased, whitespace-collapsed strings
    (DocVQA / ST-VQA); two empty strings have NL = 0.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold}")
    pred = " ".join(str(prediction).lower().split())
    best = 0.0
    for ref in references:
        ref = " ".join(str(ref).lower().split())
        longest = max(len(pred), len(ref))
        nl = _levenshtein(pred, ref) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best


_SCORERS = {"letter": letter_score, "exact": exact_score, "vqa": vqa_score, "anls": anls_score}


def check_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`METRICS`, else ``ValueError`` naming them."""
    if metric not in _SCORERS:
        raise ValueError(f"`metric` must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def score_one(prediction: str, references: Iterable[str], metric: str) -> float:
    """The score in [0, 1] of one prediction against its references under ``metric``."""
    return _SCORERS[check_metric(metric)](prediction, list(references))


def normalise_for(metric: str, text: str) -> str:
    """A generated answer as ``metric`` compares it: :func:`normalise_answer` for ``letter``,
    :func:`normalise_vqa` for ``exact`` and ``vqa``, lower case with whitespace collapsed for
    ``anls``. Scoring a normalised answer gives the score of the raw one."""
    check_metric(metric)
    if metric == "letter":
        return normalise_answer(text)
    if metric == "anls":
        return " ".join(str(text).lower().split())
    return normalise_vqa(text)
