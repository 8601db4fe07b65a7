"""Answers read from the generation as each reference reads them (skipit.empirical.parsing): one table,
every parser on the same inputs. Expected values are the references' (checked by running their code
on this table); ``""`` means the reference finds no answer."""

from __future__ import annotations

import pytest

from skipit.empirical.metrics import score_one
from skipit.empirical.parsing import PARSERS, mmmu_open_candidates, parse_answer

ABCD = ["A", "B", "C", "D"]
OPTIONS = ["a cat", "a dog", "a cow", "a bird"]

INPUTS = ["B", "B.", "B)", "B:", "(B)", "The answer is B", "**B**", "A cat is sitting", "b", "B. a dog", ""]

TABLE = {
    #                 B    B.   B)   B:   (B)  The answer is B  **B**   A cat is sitting  b    B. a dog  ""
    "mmbench":       ["B", "B", "B", "B", "B", "B",             "",     "A",              "",  "B",      ""],
    "mcq-extract":   ["B", "B", "B", "B", "B", "B",             "B",    "A",              "",  "B",      ""],
    "scienceqa":     ["B", "B", "",  "",  "",  "",              "",     "",               "B", "B",      ""],
    "scienceqa-llava": ["B", "", "",  "",  "",  "",              "",     "",               "",  "B",      ""],
    "mmmu-choice":   ["B", "B", "",  "B", "B", "B",             "",     "A",              "",  "B",      ""],
    "first-char":    ["B", "B", "B", "B", "(", "T",             "*",    "A",              "b", "B",      ""],
}


@pytest.mark.parametrize("parser", list(TABLE))
@pytest.mark.parametrize("i", range(len(INPUTS)))
def test_multiple_choice_parsers_read_letters_as_their_references(parser, i):
    assert parse_answer(parser, INPUTS[i], ABCD, OPTIONS) == TABLE[parser][i], (parser, INPUTS[i])


def test_mmbench_reads_option_text_when_no_letter_stands_alone():
    assert parse_answer("mmbench", "I think it is a dog", ABCD, ["cat", "dog", "cow", "bird"]) == "B"
    assert parse_answer("mmbench", "a cat and a dog", ABCD, ["cat", "dog", "cow", "bird"]) == ""  # two options


def test_the_one_token_first_letter_of_an_article_is_not_an_answer_under_mmbench():
    """'A cat is sitting' begins with the article A: MMBench's matcher refuses the lone A of a
    longer answer but then finds the option text 'a cat' (one option contained)."""
    assert parse_answer("mmbench", "A cat is sitting", ABCD, ["dog", "cow", "bird", "fish"]) == ""
    assert parse_answer("mmbench", "A cat is sitting", ABCD, OPTIONS) == "A"


@pytest.mark.parametrize("text,ai2d,score", [
    ("B. a dog", "B", 1.0), ("(B)", "(B)", 1.0), ("**B**", "**B**", 1.0), ("B ", "B ", 0.0),
    ("The answer is B", "The answer is B", 0.0),
])
def test_ai2d_reads_a_leading_letter_then_scores_without_punctuation(text, ai2d, score):
    assert parse_answer("ai2d", text, ABCD) == ai2d
    assert score_one(parse_answer("ai2d", text, ABCD), ["B"], "em-nopunct") == score


@pytest.mark.parametrize("text,pope,pope_llava,mme", [
    ("Yes", "yes", "yes", "yes"),
    ("Yes.", "yes.", "yes", "yes"),
    ("No, there is not.", "no, there is not.", "no", "no"),
    ("There is no dog.", "there is no dog.", "no", "other"),
    ("y", "y", "yes", "yes"),
    ("I see a dog", "i see a dog", "yes", "other"),
    ("Not really", "not really", "yes", "no"),      # "Not" is not "not"; MME finds "no" in "not "
])
def test_yes_no_parsers(text, pope, pope_llava, mme):
    assert parse_answer("pope", text) == pope
    assert parse_answer("pope-llava", text) == pope_llava
    assert parse_answer("mme", text) == mme


def test_free_form_parsers():
    assert parse_answer("text", "  Two dogs \n") == "Two dogs"
    assert parse_answer("raw", " 12 \n") == " 12 \n"
    assert parse_answer("lower-no-period", " Downhill.. ") == "downhill"
    assert parse_answer("gqa-llava", "Yes.") == "yes"
    assert parse_answer("evalai", "Red, white?") == "red white"


def test_mmmu_open_candidates_keep_the_tail_after_an_indicator_and_its_numbers():
    assert mmmu_open_candidates("The answer is 42.") == [42.0]
    assert mmmu_open_candidates("so the color is blue") == ["blue"]
    assert mmmu_open_candidates("x") == [" x", "x "]


def test_every_parser_is_in_the_table_or_has_its_own_test():
    tested = set(TABLE) | {"ai2d", "pope", "pope-llava", "mme", "text", "raw", "lower-no-period", "gqa-llava", "evalai"}
    assert set(PARSERS) == tested
    with pytest.raises(ValueError, match=r"`parser` must be one of text, .*, got 'nope'"):
        parse_answer("nope", "B")


def test_read_answer_parses_then_normalises_and_one_token_only_without_a_parser():
    from PIL import Image

    from skipit.empirical.data import Example
    from skipit.empirical.parsing import read_answer, reads_one_token

    img = Image.new("RGB", (8, 8))
    parsed = Example(img, "q", "B", list("ABCD"), metric="letter", parser="mmbench", options=OPTIONS)
    plain = Example(img, "q", "B", list("ABCD"), metric="letter")
    assert read_answer(parsed, "The answer is B") == "b" and read_answer(parsed, "A cat is sitting") == "a"
    assert read_answer(plain, "(B)") == "b"
    assert not reads_one_token(parsed) and reads_one_token(plain)
