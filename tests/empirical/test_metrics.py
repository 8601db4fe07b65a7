"""The scores of visual question answering against hand-computed values (skipit.empirical.metrics)."""

from __future__ import annotations

import pytest

from skipit.empirical.metrics import (
    anls_score,
    exact_score,
    letter_score,
    normalise_answer,
    normalise_vqa,
    score_one,
    vqa_score,
)


@pytest.mark.parametrize("raw,expected", [
    ("The Two dogs.", "2 dogs"),          # article dropped, number word to digit, final period dropped
    ("an apple", "apple"),
    ("A", ""),                            # a lone article is nothing
    ("1,000", "1000"),                    # comma inside a number removed
    ("yes, it is", "yes it is"),          # punctuation next to a space removed
    ("red-white", "red white"),           # punctuation joining two words becomes a space
    ("3.5", "3.5"),                       # a period inside a number stays
    ("dont", "don't"),                    # apostrophe-less contraction restored
    ("None", "0"),
    ("  Ten\tcats\n", "10 cats"),
])
def test_vqa_normalisation_corner_cases(raw, expected):
    assert normalise_vqa(raw) == expected


def test_one_token_normalisation_keeps_letters_and_digits_only():
    assert normalise_answer(" (B).") == "b" and normalise_answer("Yes!") == "yes"
    assert letter_score(" (B)", ["B"]) == 1.0
    assert letter_score("C", ["B"]) == 0.0
    assert letter_score("", [""]) == 0.0  # an empty answer never counts as right


def test_exact_match_uses_the_vqa_normalisation():
    assert exact_score("Two", ["2"]) == 1.0
    assert exact_score("the cat.", ["cat"]) == 1.0
    assert exact_score("cats", ["cat"]) == 0.0
    assert exact_score("dog", ["cat", "a dog"]) == 1.0  # any reference


# ten references: "two" and "2" normalise alike, eight say "3"
TEN = ["two", "2", "3", "3", "3", "3", "3", "3", "3", "3"]


@pytest.mark.parametrize("prediction,expected", [
    ("2", (8 * 2 / 3 + 2 * 1 / 3) / 10),        # 2 matches: 0.6
    ("Three.", 1.0),                            # 8 matches: every subset has >= 3
    ("4", 0.0),
])
def test_vqa_accuracy_averages_the_leave_one_out_subsets(prediction, expected):
    assert vqa_score(prediction, TEN) == pytest.approx(expected, abs=1e-15)


def test_vqa_accuracy_with_one_and_three_matches():
    refs = ["cat"] + ["dog"] * 9
    assert vqa_score("cat", refs) == pytest.approx(9 / 10 * 1 / 3, abs=1e-15)  # 0.3
    refs = ["cat"] * 3 + ["dog"] * 7
    assert vqa_score("a cat", refs) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10, abs=1e-15)  # 0.9
    assert vqa_score("dog", ["dog"]) == 1.0  # one reference: exact match
    with pytest.raises(ValueError, match=r"`references` must not be empty, got \[\]"):
        vqa_score("dog", [])


@pytest.mark.parametrize("prediction,references,expected", [
    ("hello", ["hallo"], 1 - 1 / 5),             # one substitution in five characters
    ("Hello  World", ["hello world"], 1.0),     # case and repeated spaces do not count
    ("ab", ["ax"], 0.0),                         # NL = 0.5 exactly: at the threshold, scored 0
    ("abc", ["xyz"], 0.0),
    ("kitten", ["sitting", "kitten!"], 1 - 1 / 7),  # best reference: one insertion in 7
    ("", [""], 1.0),
])
def test_anls_against_hand_computed_levenshtein(prediction, references, expected):
    assert anls_score(prediction, references) == pytest.approx(expected, abs=1e-15)


def test_unknown_metric_names_the_allowed_ones():
    assert score_one("2", TEN, "vqa") == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"`metric` must be one of letter, exact, vqa, anls, got 'bleu'"):
        score_one("2", TEN, "bleu")
