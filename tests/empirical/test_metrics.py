"""The scores of visual question answering, each equal to its reference on an adversarial table
(skipit.empirical.metrics). Expected values are those the reference scripts give (checked by running
them on these tables); a deliberate difference is marked ``# deliberate`` and pinned."""

from __future__ import annotations

import pytest

from skipit.empirical.metrics import (
    METRICS,
    anls_score,
    contains_score,
    em_nopunct_score,
    evalai_process,
    exact_score,
    letter_score,
    match_score,
    mme_score,
    mmmu_open_score,
    normalise_answer,
    normalise_for,
    normalise_vqa,
    relaxed_score,
    score_one,
    vqa_evalai_score,
    vqa_lmms_score,
    vqa_score,
)


@pytest.mark.parametrize("raw,expected", [
    ("The Two dogs.", "2 dogs"),          # article dropped, number word to digit, final period dropped
    ("an apple", "apple"),
    ("A", ""),                            # a lone article is nothing (exact_score compares it as a letter)
    ("1,000", "1000"),                    # comma inside a number removed
    ("yes, it is", "yes it is"),          # punctuation next to a space removed
    ("red-white", "red white"),           # punctuation joining two words becomes a space
    ("3.5", "3.5"),                       # a period inside a number stays
    ("dont", "don't"),                    # apostrophe-less contraction restored
    ("None", "0"),
    ("  Ten\tcats\n", "10 cats"),
    ("café!", "café"),                    # unicode letters kept
])
def test_vqa_normalisation_corner_cases(raw, expected):
    assert normalise_vqa(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("red,white", "redwhite"),            # commas deleted, not spaced
    ("Why?", "why"),
    ("the dog's bone", "dog 's bone"),    # 's split off
    ("Two, three", "2 3"),
    ("1,000", "1000"),
])
def test_the_evalai_processor_deletes_commas_and_question_marks_and_splits_s(raw, expected):
    assert evalai_process(raw) == expected


def test_a_gold_letter_never_normalises_to_the_empty_string():
    for metric in ("letter", "exact"):
        assert normalise_for(metric, "A") != ""
        assert score_one("A", ["A"], metric) == 1.0
        for wrong in ("", ".", "the", "an", "B"):
            assert score_one(wrong, ["A"], metric) == 0.0, (metric, wrong)
    assert normalise_answer(" (B).") == "b"
    assert letter_score("", [""]) == 0.0  # an empty answer never counts as right


@pytest.mark.parametrize("prediction,references,expected", [
    ("Two", ["2"], 1.0),
    ("the cat.", ["cat"], 1.0),
    ("cats", ["cat"], 0.0),
    ("dog", ["cat", "a dog"], 1.0),       # any reference
    ("A.", ["A"], 1.0),                   # deliberate: letters compared as letters
    ("", ["A"], 0.0),                     # deliberate: the official tables would give 1.0
    ("1,000", ["1000"], 1.0),
    ("Yes", ["yes"], 1.0),
])
def test_exact_match_table(prediction, references, expected):
    assert exact_score(prediction, references) == expected


# ten references: "two" and "2" differ as written, eight say "3"
TEN = ["two", "2", "3", "3", "3", "3", "3", "3", "3", "3"]


@pytest.mark.parametrize("prediction,references,expected", [
    ("2", TEN, 9 / 10 * 1 / 3),                         # references are not digit-normalised: one match
    ("Three.", TEN, 1.0),                               # 8 matches
    ("4", TEN, 0.0),
    ("red,white", ["red white"] * 10, 1.0),             # identical references as written; the comma becomes a space
    ("Red White", ["red white"] * 10, 1.0),
    ("Two", ["Two"] * 10, 0.0),                         # identical, left as written: "2" != "Two"
    ("two", ["two", "two", "two", "2"] + ["x"] * 6, 0.3),  # refs differ: punctuation only; "two" -> "2" matches one
    ("12", [" 12 "] * 10, 0.0),                         # identical references are not even stripped
    ("cat", ["cat"] + ["dog"] * 9, 0.3),
    ("a cat", ["cat"] * 3 + ["dog"] * 7, 0.9),
    ("dog", ["cat", "cat", "dog", "dog"], 0.5),          # fewer than ten references
    ("yes", ["yes", "yes."], 1 / 3),                    # "yes." -> "yes" by punctuation: one other match each
    ("A", ["A"] * 10, 1.0),                             # deliberate: the script's "" never equals "A"
    ("dog", ["dog"], 1.0),                              # deliberate: one reference is exact match (script: 0)
])
def test_vqa_accuracy_is_the_official_scripts(prediction, references, expected):
    assert vqa_score(prediction, references) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("prediction,references,expected", [
    ("red,white", ["red white"] * 10, 0.0),             # the EvalAI processor deletes the comma
    ("red white", ["red white"] * 10, 1.0),
    ("Two", ["two"] * 10, 1.0),                         # both sides processed, always
    ("dog's", ["dog 's"] * 3 + ["cat"] * 7, 0.9),
    ("what?", ["what"] * 10, 1.0),
    ("2", TEN, 0.6),                                    # "two" and "2" alike: 2 matches
    ("unanswerable", ["unanswerable"] * 4 + ["x"] * 6, 1.0),
])
def test_vqa_accuracy_with_the_evalai_processor(prediction, references, expected):
    assert vqa_evalai_score(prediction, references) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("prediction,references,expected", [
    ("2", TEN, 0.6),                                    # digit/article on both sides
    ("red,white", ["red white"] * 10, 1.0),             # no comma deletion in lmms-eval's VQAv2 task
    ("Two", ["Two"] * 10, 1.0),
])
def test_vqa_accuracy_of_lmms_evals_vqav2_task(prediction, references, expected):
    assert vqa_lmms_score(prediction, references) == pytest.approx(expected, abs=1e-15)


def test_vqa_scores_refuse_no_references():
    for scorer in (vqa_score, vqa_evalai_score, vqa_lmms_score, anls_score):
        with pytest.raises(ValueError, match=r"`references` must not be empty, got \[\]"):
            scorer("dog", [])


@pytest.mark.parametrize("prediction,references,expected", [
    ("abcd", ["abc"], 0.75),                     # the longer string's length divides (not the reference's)
    ("abc", ["abcd"], 0.75),
    ("13", ["12"], 0.5),                         # NL = 0.5 exactly: kept (the script tests score < 0.5)
    ("ab", ["ax"], 0.5),
    ("abc", ["xyz"], 0.0),
    ("hello", ["hallo"], 0.8),
    ("Hello  World", ["hello world"], 1.0),      # collapsed whitespace: distance 0
    ("13", [" 12 "], 0.75),                      # padded reference: distance 1 over raw length 4
    ("  ", ["x"], 0.5),                          # distance 1 over the raw length 2: kept at 0.5
    ("kitten", ["sitting", "kitten!"], 1 - 1 / 7),
    ("", [""], 1.0),
    ("straße", ["STRASSE"], 1 - 2 / 7),          # upper() lengthens "ß": lengths 7 and 7, distance 2 ("ß" vs "ss")
])
def test_anls_is_the_docvqa_scripts(prediction, references, expected):
    assert anls_score(prediction, references) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("prediction,references,expected", [
    ("10.4", ["10"], 1.0),                       # 4 % off
    ("10.5", ["10"], 1.0),                       # 5 % exactly: kept (<=)
    ("10.6", ["10"], 0.0),
    ("12%", ["0.12"], 1.0),                      # percent read as a fraction
    ("0", ["0"], 1.0),                           # a zero gold falls back to string equality
    ("0.0", ["0"], 0.0),
    ("1,000", ["1000"], 0.0),                    # "1,000" is no float: string comparison
    ("Yes", ["yes"], 1.0),
    (" 12 ", ["12"], 1.0),                       # float() ignores padding
])
def test_relaxed_accuracy_is_chartqas(prediction, references, expected):
    assert relaxed_score(prediction, references) == expected


@pytest.mark.parametrize("prediction,references,nospace,expected", [
    ("The word is HELLO.", ["hello"], False, 1.0),
    ("ＨＥＬＬＯ", ["hello"], False, 1.0),           # full-width ASCII folded
    ("hel lo", ["hello"], False, 0.0),
    ("x ^ { 2 }", ["x^{2}"], True, 1.0),          # HME100k: spaces removed
    ("X^{2}", ["x^{2}"], True, 0.0),              # HME100k keeps case
])
def test_containment_is_ocrbenchs(prediction, references, nospace, expected):
    assert contains_score(prediction, references, nospace=nospace) == expected


def test_match_and_exact_match_without_punctuation():
    assert match_score(" Yes ", ["yes"]) == 1.0 and match_score("", [""]) == 0.0
    assert em_nopunct_score("(B)", ["B"]) == 1.0 and em_nopunct_score("**b**", ["B"]) == 1.0
    assert em_nopunct_score("B ", ["B"]) == 0.0  # lm-eval does not strip


@pytest.mark.parametrize("prediction,references,expected", [
    ("The answer is 42.", ["42"], 1.0),
    ("so it is 3.14159", ["3.14"], 1.0),          # numbers rounded to 2 decimals
    ("1,000 apples", ["1000"], 1.0),
    ("therefore the color is blue", ["blue"], 1.0),
    ("red", ["blue"], 0.0),
    ("a", ["a"], 1.0),                            # a one-letter answer is padded on both sides, so is the gold
    ("b is a", ["a"], 1.0),                       # the tail after "is " is "a" -> " a" contains " a"
    ("banana", ["a"], 0.0),                       # " a" / "a " are not inside "banana"
])
def test_mmmu_open_questions_follow_mmmus_eval_open(prediction, references, expected):
    assert mmmu_open_score(prediction, references) == expected


def test_mme_sums_accuracy_and_accuracy_plus_per_category():
    scores = [1, 1, 1, 0, 0, 0, 1, 1]
    cats = ["existence"] * 4 + ["code_reasoning"] * 4
    images = ["a", "a", "b", "b", "c", "c", "d", "d"]
    got = mme_score(scores, cats, images)
    # existence: image a 100 + 100, image b 50 + 0 -> mean 125; code: c 0, d 200 -> 100
    assert got == {"perception": 125.0, "cognition": 100.0, "total": 225.0}
    with pytest.raises(ValueError, match=r"image 'a' of 'existence' has 1 question\(s\), expected 2"):
        mme_score([1], ["existence"], ["a"])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("answer", ["A", "the Two dogs.", " 12 ", "red,white", "ＨＥＬＬＯ", "", "1,000"])
def test_scoring_a_normalised_answer_gives_the_raw_answers_score(metric, answer):
    refs = ["A", "2 dogs", "12", "red white", "hello", "1000"]
    assert score_one(normalise_for(metric, answer), refs, metric) == score_one(answer, refs, metric)


def test_unknown_metric_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"`metric` must be one of letter, exact, vqa, .*, got 'bleu'"):
        score_one("2", TEN, "bleu")
