"""The model's answers (skipit.empirical.answers): one greedy token for letters, greedy text otherwise."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from skipit.empirical.answers import answers_changed, comparable_answers, predict_answers, score
from skipit.empirical.data import Example, build_inputs
from skipit.empirical.metrics import normalise_for, normalise_vqa


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.testing import save_tiny_vlm

    directory = tmp_path_factory.mktemp("llava")
    save_tiny_vlm("llava", directory, seed=5)
    model, processor, _ = load_model_and_processor(str(directory), device="cpu")
    return model, processor


def _examples(metric):
    return [Example(Image.new("RGB", (8, 8), (40 * i, 9, 200 - 30 * i)), "what digit" + " is the" * i, "one",
                    metric=metric) for i in range(3)]


def _greedy_by_hand(model, processor, example, steps):
    """Greedy decoding without a cache: a full forward per token, the argmax (over tokens other
    than the image placeholder) appended."""
    from skipit.empirical.testing import IMAGE_ID

    inputs = build_inputs(processor, [example], model)
    ids = inputs["input_ids"]
    out = []
    for _ in range(steps):
        batch = {**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.no_grad():
            logits = model(**batch).logits[0, -1]
        logits[IMAGE_ID] = -torch.inf
        token = int(logits.argmax())
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


def test_free_form_answers_are_the_greedy_generation_normalised(llava):
    model, processor = llava
    examples = _examples("exact")
    got = predict_answers(model, processor, examples, batch_size=2, max_new_tokens=3)
    tok = processor.tokenizer
    expected = [normalise_vqa(tok.decode(_greedy_by_hand(model, processor, ex, 3), skip_special_tokens=True))
                for ex in examples]
    assert got == expected
    assert len(set(got)) > 1  # the images lead to different answers: not a constant


def test_letter_answers_read_one_token(llava):
    model, processor = llava
    examples = _examples("letter")
    got = predict_answers(model, processor, examples, batch_size=3, max_new_tokens=5)
    tok = processor.tokenizer
    expected = [normalise_for("letter", tok.decode(_greedy_by_hand(model, processor, ex, 1))) for ex in examples]
    assert got == expected


def test_answers_under_a_skipping_context_match_greedy_decoding_by_hand(llava):
    from skipit.empirical.skipping import late_entry

    model, processor = llava
    examples = _examples("exact")
    got = predict_answers(model, processor, examples, batch_size=3, max_new_tokens=2,
                          context=lambda: late_entry(model, layer=3))
    tok = processor.tokenizer
    with late_entry(model, layer=3):
        expected = [normalise_vqa(tok.decode(_greedy_by_hand(model, processor, ex, 2), skip_special_tokens=True))
                    for ex in examples]
    assert got == expected


def test_answers_never_hold_an_image_placeholder(tmp_path):
    """A tiny Gemma 3 whose greedy first token is the image placeholder: generated, it would be
    taken for a vision token (early exit then drops every token of a decode step and the layer
    gets an empty sequence). It is suppressed, and the answer is the best other token."""
    from skipit.empirical.loading import load_model_and_processor
    from skipit.empirical.skipping import early_exit
    from skipit.empirical.testing import IMAGE_ID, save_tiny_vlm

    save_tiny_vlm("gemma3", tmp_path)
    model, processor, _ = load_model_and_processor(str(tmp_path), device="cpu")
    example = Example(Image.new("RGB", (32, 32), (18, 50, 90)), "what digit is is", "one", metric="exact")
    with torch.no_grad():
        first = int(model(**build_inputs(processor, [example], model)).logits[0, -1].argmax())
    assert first == IMAGE_ID  # the case this test is about
    got = predict_answers(model, processor, [example], max_new_tokens=2, context=lambda: early_exit(model, layer=2))
    with early_exit(model, layer=2):
        expected = normalise_vqa(processor.tokenizer.decode(_greedy_by_hand(model, processor, example, 2),
                                                            skip_special_tokens=True))
    assert got == [expected] and expected != ""


def test_score_uses_each_examples_metric_and_references():
    img = Image.new("RGB", (8, 8))
    refs = ["two", "2", "3", "3", "3", "3", "3", "3", "3", "3"]
    examples = [Example(img, "q", "B", ["A", "B"], metric="letter"),
                Example(img, "q", "3", references=refs, metric="vqa"),
                Example(img, "q", "hello", metric="anls")]
    predictions = [normalise_for("letter", "(B)"), normalise_for("vqa", "Two"), normalise_for("anls", "Hallo")]
    # the official VQA script leaves differing references unnormalised but for punctuation: "2" matches one
    assert score(predictions, examples) == pytest.approx((1.0 + 0.3 + 0.8) / 3, abs=1e-15)
    assert score(["b", "2", "hallo"], examples, metric="exact") == pytest.approx(2 / 3, abs=1e-15)  # hallo != hello
    with pytest.raises(ValueError, match=r"`predictions` must have one answer per example \(3\), got 2"):
        score(["b", "2"], examples)


@pytest.mark.parametrize("metric,raw", [("exact", "The Two dogs."), ("vqa", "1,000 red-white"),
                                        ("anls", "  Hello   World "), ("letter", " (B).")])
def test_normalised_answers_score_as_the_raw_ones(metric, raw):
    """Normalising twice changes nothing: a normalised prediction scores as its raw text."""
    from skipit.empirical.metrics import score_one

    once = normalise_for(metric, raw)
    assert normalise_for(metric, once) == once
    refs = ["2 dogs", "1000 red white", "hello world", "B"]
    assert score_one(once, refs, metric) == score_one(raw, refs, metric)


def test_answers_changed_compares_normalised_answers():
    assert answers_changed(["2 dogs", "b"], ["2 dogs", "c"]) == [False, True]


def test_comparable_answers_normalise_each_answer_by_its_metric():
    """A letter answer to letters and digits; a free-form one by its metric, so answers differing
    only in spaces stay different; raw and already normalised answers compare alike."""
    img = Image.new("RGB", (8, 8))
    examples = [Example(img, "q", "B", ["A", "B"], metric="letter")]
    examples += [Example(img, "q", "red white", metric=m) for m in ("vqa", "exact", "anls")]
    raw = [" (B).", "Red-White", "Red-White", "Red  White "]
    once = comparable_answers(raw, examples)
    assert once == ["b", "red white", "red white", "Red  White "]  # ANLS counts raw lengths: kept as written
    assert comparable_answers(once, examples) == once
    joined = comparable_answers(["b", "redwhite", "redwhite", "redwhite"], examples)
    assert answers_changed(once, joined) == [False, True, True, True]
    with pytest.raises(ValueError, match=r"`predictions` must have one answer per example \(4\), got 1"):
        comparable_answers(["b"], examples)


def test_a_batch_mixing_letter_and_free_form_examples_reads_one_token_for_the_letters(llava):
    """One batch holds two letter examples and a free-form one, so it is generated (3 tokens): each
    letter answer is its first greedy token alone, the free-form answer the whole generation.
    Reading a letter from every generated token gives another answer here (checked), so the
    wrong reading fails."""
    model, processor = llava
    letters, free = _examples("letter"), _examples("exact")
    examples = [letters[0], free[1], letters[2]]
    got = predict_answers(model, processor, examples, batch_size=3, max_new_tokens=3)
    tok = processor.tokenizer
    greedy = [_greedy_by_hand(model, processor, ex, 3) for ex in examples]
    first = [normalise_for("letter", tok.decode(g[:1], skip_special_tokens=True)) for g in greedy]
    whole = [normalise_for("letter", tok.decode(g, skip_special_tokens=True)) for g in greedy]
    assert got == [first[0], normalise_vqa(tok.decode(greedy[1], skip_special_tokens=True)), first[2]]
    assert whole[0] != first[0] or whole[2] != first[2]  # the case this test is about


def test_generated_answers_honour_the_token_cap(llava, monkeypatch):
    """Free-form answers are batched by the same rules as one-token answers: with a cap of one
    prompt's padded tokens, every ``generate`` call holds one example, and the answers equal
    those of one batch of three."""
    from skipit.empirical.distributed import prompt_lengths

    model, processor = llava
    examples = _examples("exact")
    whole = predict_answers(model, processor, examples, batch_size=3, max_new_tokens=2)
    cap = max(prompt_lengths(processor, examples, model))
    sizes = []
    real = model.generate

    def counting(**kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", counting)
    capped = predict_answers(model, processor, examples, batch_size=3, max_new_tokens=2, max_batch_tokens=cap)
    assert sizes == [1, 1, 1]
    assert capped == whole
