"""Examples for ``skipit certify``: JSONL checks with line numbers, bundled sets, prompts, batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from skipit.empirical.data import (
    FALLBACK_TEMPLATE,
    Example,
    build_inputs,
    build_prompt,
    load_examples,
    load_jsonl,
)
from skipit.errors import SkipitError


def _image(path, value=0):
    arr = np.full((8, 8), value, dtype=np.uint8)
    arr[2:6, 3] = 255
    Image.fromarray(arr, mode="L").save(path)


def _write(tmp_path, lines):
    (tmp_path / "img").mkdir(exist_ok=True)
    _image(tmp_path / "img" / "a.png", 0)
    _image(tmp_path / "img" / "b.png", 40)
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


GOOD_A = {"image": "img/a.png", "question": "which digit is shown?", "answer": "1"}
GOOD_B = {"image": "img/b.png", "question": "is the digit even?", "answer": "no", "choices": ["yes", "no"]}


def test_jsonl_loads_images_relative_to_the_file(tmp_path):
    path = _write(tmp_path, [GOOD_A, "", GOOD_B])
    examples, report = load_jsonl(path)
    assert [e.question for e in examples] == [GOOD_A["question"], GOOD_B["question"]]
    assert examples[0].choices == [] and examples[1].choices == ["yes", "no"]
    assert examples[0].image.mode == "RGB" and examples[0].image.size == (8, 8)
    assert examples[1].source == "data.jsonl:3"
    assert report.skipped == [] and len(report.sha256) == 64


@pytest.mark.parametrize("bad,why", [
    ("{not json", r"line 2: invalid JSON"),
    ({"image": "img/a.png", "answer": "1"}, r"line 2: missing field 'question'"),
    ({"question": "q", "answer": "1"}, r"line 2: missing field 'image'"),
    ({"image": "img/broken.png", "question": "q", "answer": "1"}, r"line 2: unreadable image 'img/broken.png'"),
    ({"image": "img/none.png", "question": "q", "answer": "1"}, r"line 2: unreadable image 'img/none.png'"),
    ({"image": "img/a.png", "question": "q", "answer": 3}, r"line 2: field 'answer' must be a non-empty string"),
    ({"image": "img/a.png", "question": "q", "answer": "1", "choices": "ab"}, r"line 2: field 'choices'"),
])
def test_bad_line_is_reported_with_its_line_number(tmp_path, bad, why):
    path = _write(tmp_path, [GOOD_A, bad, GOOD_B])
    with pytest.raises(SkipitError, match=why) as info:
        load_jsonl(path)
    assert "`skip_bad=True`" in str(info.value)


def test_every_bad_line_is_listed(tmp_path):
    path = _write(tmp_path, ["{x", GOOD_A, {"image": "img/a.png"}, GOOD_B, {"image": "img/broken.png",
                                                                           "question": "q", "answer": "a"}])
    with pytest.raises(SkipitError, match=r"3 bad line\(s\)") as info:
        load_jsonl(path)
    text = str(info.value)
    assert "line 1:" in text and "line 3:" in text and "line 5:" in text and "line 2:" not in text


BRACES = "{skip_bad}{}"
"""User text that the ``{parameter}`` syntax of SettingError would misread if it were not kept verbatim."""


def test_a_bad_line_holding_braces_is_listed_verbatim_and_names_skip_bad(tmp_path, capsys):
    """The listing shows the file name and the row's image path as written; the library names
    ``skip_bad``, the command line its flag."""
    from skipit.cli import main

    folder = tmp_path / BRACES
    folder.mkdir()
    path = _write(folder, [GOOD_A, {"image": f"img/{BRACES}.png", "question": BRACES, "answer": "1"}])
    listing = (f"1 bad line(s) in {path}:\n  line 2: unreadable image 'img/{BRACES}.png' (FileNotFoundError: "
               f"[Errno 2] No such file or directory: '{folder / 'img' / BRACES}.png')\nfix them, or pass ")
    with pytest.raises(SkipitError) as info:
        load_jsonl(path)
    assert str(info.value) == listing + "`skip_bad=True` to skip them"
    assert main(["data", str(path)]) == 2
    assert capsys.readouterr().err == f"skipit data: error: {listing}--skip-bad to skip them\n"


@pytest.mark.parametrize("template,fields", [
    ("Q: {question} {skip_bad}", "{question}, {skip_bad}"),
    ("Q: {question}\n{options} {}", "{}, {options}, {question}"),
    ("Q: {question}\n{options} {skip_bad", None),
])
def test_an_mcq_template_holding_braces_is_shown_verbatim(tmp_path, capsys, template, fields):
    """The refused template is quoted as given; the library names ``mcq_template``, the command
    line ``--mcq-template``."""
    from skipit.cli import main

    path = _write(tmp_path, [GOOD_A])
    got = f"got {template!r} (" + ("expected '}' before end of string)" if fields is None else f"fields: {fields})")
    verb = "be a format string with" if fields is None else "use exactly the fields"
    want = f" must {verb} {{question}} and {{options}}, {got}"
    with pytest.raises(SkipitError) as info:
        load_examples(str(path), mcq_template=template)
    assert str(info.value) == "`mcq_template`" + want
    assert main(["data", str(path), "--mcq-template", template]) == 2
    assert capsys.readouterr().err == f"skipit data: error: --mcq-template{want}\n"


def test_skip_bad_skips_and_reports(tmp_path):
    path = _write(tmp_path, [GOOD_A, "{oops", {"image": "img/broken.png", "question": "q", "answer": "a"}, GOOD_B])
    examples, report = load_jsonl(path, skip_bad=True)
    assert [e.answer for e in examples] == ["1", "no"]
    assert [line for line, _ in report.skipped] == [2, 3]


def test_all_lines_bad_is_an_error_even_with_skip_bad(tmp_path):
    path = _write(tmp_path, ["{oops"])
    with pytest.raises(SkipitError, match="no usable examples"):
        load_jsonl(path, skip_bad=True)


@pytest.fixture
def decoded(monkeypatch):
    """File names of the images whose pixels were decoded (``ImageFile.load``; ``verify`` does
    not decode), one entry per opened image however often ``load`` is called on it."""
    from PIL import ImageFile

    paths = []
    seen = {}  # id -> image, kept alive so that ids are not reused
    real = ImageFile.ImageFile.load

    def load(self):
        if seen.setdefault(id(self), self) is self and len(seen) > len(paths):
            paths.append(getattr(self, "filename", None))
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return paths


def test_limit_decodes_the_first_n_images_only(tmp_path, decoded):
    path = _write(tmp_path, [GOOD_A, GOOD_B, GOOD_B, GOOD_A, GOOD_B])
    examples, report = load_jsonl(path, limit=2)
    assert [e.source for e in examples] == ["data.jsonl:1", "data.jsonl:2"]
    assert [e.answer for e in examples] == ["1", "no"]
    assert [p.rsplit("/", 1)[-1] for p in decoded] == ["a.png", "b.png"]
    assert report.sha256 == load_jsonl(path)[1].sha256  # the file's hash, all lines


@pytest.mark.parametrize("bad,why", [
    ({"image": "img/broken.png", "question": "q", "answer": "1"}, r"line 4: unreadable image 'img/broken.png'"),
    ({"image": "img/none.png", "question": "q", "answer": "1"}, r"line 4: unreadable image 'img/none.png'"),
    ({"image": "img/a.png", "answer": "1"}, r"line 4: missing field 'question'"),
    ("{not json", r"line 4: invalid JSON"),
])
def test_limit_still_checks_every_line(tmp_path, decoded, bad, why):
    """A bad line after the first N is still an error, found without decoding its image."""
    path = _write(tmp_path, [GOOD_A, GOOD_B, GOOD_A, bad])
    with pytest.raises(SkipitError, match=r"1 bad line\(s\).*\n  " + why):
        load_jsonl(path, limit=2)
    assert len(decoded) == 2


def test_limit_counts_good_lines_when_skipping_bad_ones(tmp_path):
    path = _write(tmp_path, ["{oops", GOOD_A, {"image": "img/broken.png", "question": "q", "answer": "a"}, GOOD_B,
                             GOOD_A, "{late"])
    examples, report = load_jsonl(path, skip_bad=True, limit=2)
    assert [e.source for e in examples] == ["data.jsonl:2", "data.jsonl:4"]
    assert [line for line, _ in report.skipped] == [1, 3, 6]


@pytest.mark.parametrize("limit", [0, -1, 2.0, True])
def test_limit_must_be_a_positive_integer(tmp_path, limit):
    path = _write(tmp_path, [GOOD_A])
    with pytest.raises(ValueError, match=r"`limit` must be None or an integer >= 1"):
        load_examples(path, limit=limit)


def test_bundled_set_with_a_limit_is_its_first_examples():
    import skipit.demo  # noqa: F401  (the bundled set must ship)
    from skipit.empirical.data import data_sha256

    first, report = load_examples("digits-test", limit=5)
    everything, _ = load_examples("digits-test")
    assert [e.source for e in first] == [e.source for e in everything[:5]]
    assert data_sha256(first) == data_sha256(everything[:5]) == report.sha256


@pytest.mark.parametrize("command", [["certify"], ["evaluate", "--model", "some/model"]])
def test_samples_option_still_checks_every_line(tmp_path, decoded, capsys, command):
    """``--samples 2`` draws a seeded sample by image from the whole file (skipit.empirical.units), so
    every line is read: a bad line 4 stops the command (exit code 2, before any model is loaded) once
    the 3 good lines' images were decoded (an image's identity is its decoded pixels)."""
    from skipit.cli import main

    path = _write(tmp_path, [GOOD_A, GOOD_B, GOOD_A, {"image": "img/broken.png", "question": "q", "answer": "1"}])
    argv = command + ["--data", str(path), "--samples", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "line 4: unreadable image 'img/broken.png'" in capsys.readouterr().err
    assert len(decoded) == 3


def test_unknown_data_name_lists_bundled_sets():
    with pytest.raises(SkipitError, match=r"neither a file nor a bundled data set \(bundled: .*digits-test"):
        load_examples("no-such-set")


def test_bundled_set_loads_and_matches_demo_export(tmp_path):
    """The bundled test set and its JSONL export (skipit.demo.export_jsonl) are the same data."""
    import skipit.demo as demo
    bundled, report = load_examples("digits-test")
    assert report.source == "bundled:digits-test"
    assert len(bundled) == len(demo.load_digits_vqa(**demo.BUNDLED_DATASETS["digits-test"]))
    path = demo.export_jsonl(demo.load_digits_vqa(**demo.BUNDLED_DATASETS["digits-test"])[:8], tmp_path)
    exported, _ = load_examples(path)
    from skipit.empirical.data import data_sha256

    assert data_sha256(exported) == data_sha256(bundled[:8])


# sha256 of [json ["q", "a", []], b"RGB(8, 8)" + 64 black pixels, the same with 64 (0, 0, 1) pixels]
SHA256_A_B = "ad73372148763b811282a36dcfb0f189363aaedc49436a2ea79b3ec8d3ca5f18"


def test_data_sha256_sees_pixels_and_order():
    from skipit.empirical.data import data_sha256

    a = Example(Image.new("RGB", (8, 8), (0, 0, 0)), "q", "a")
    b = Example(Image.new("RGB", (8, 8), (0, 0, 1)), "q", "a")
    assert data_sha256([a, b]) == SHA256_A_B  # fixed across processes and versions: checkpoints rely on it
    assert data_sha256([b, a]) != SHA256_A_B
    assert data_sha256([a]) != data_sha256([b])
    # the content counts, not the objects: fresh images with the same pixels, a renamed source
    same = [Example(Image.new("RGB", (8, 8), (0, 0, 0)), "q", "a", source="elsewhere:1"),
            Example(Image.frombytes("RGB", (8, 8), b.image.tobytes()), "q", "a")]
    assert data_sha256(same) == SHA256_A_B


@pytest.mark.parametrize("field,value", [
    ("question", "q?"), ("answer", "b"), ("choices", ["a"]),
    ("image", Image.new("RGB", (16, 4), (0, 0, 0))),  # the same bytes, another size
    ("image", Image.new("YCbCr", (8, 8), (0, 0, 0))),  # the same bytes and size, another mode
])
def test_data_sha256_changes_with_each_field(field, value):
    from dataclasses import replace

    from skipit.empirical.data import data_sha256

    a = Example(Image.new("RGB", (8, 8), (0, 0, 0)), "q", "a")
    b = Example(Image.new("RGB", (8, 8), (0, 0, 1)), "q", "a")
    if field == "image":
        assert value.tobytes() == a.image.tobytes()
    assert data_sha256([replace(a, **{field: value}), b]) != SHA256_A_B


class _NoTemplate:
    chat_template = None
    image_token = "<image>"


class _Template:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, conversation, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        content = conversation[0]["content"]
        return f"<user>[{content[0]['type']}] {content[1]['text']}<assistant>"


def test_prompt_without_chat_template_is_the_llava_form():
    ex = Example(Image.new("RGB", (8, 8)), "which digit is shown? A) 1 B) 2", "A", ["A", "B"])
    assert build_prompt(_NoTemplate(), ex) == "USER: <image>\nwhich digit is shown? A) 1 B) 2 ASSISTANT:"
    assert FALLBACK_TEMPLATE == "USER: <image>\n{question} ASSISTANT:"


def test_prompt_uses_the_chat_template_with_the_image_first():
    ex = Example(Image.new("RGB", (8, 8)), "is it even?", "no")
    assert build_prompt(_Template(), ex) == "<user>[image] is it even?<assistant>"


def test_batches_are_padded_and_end_at_the_prompt(tmp_path):
    """Questions of different lengths: one padded batch; each row's last real token ends the prompt."""
    from skipit.empirical.testing import save_tiny_vlm
    from skipit.empirical.loading import load_model_and_processor

    save_tiny_vlm("llava", tmp_path / "m")
    model, processor, _ = load_model_and_processor(str(tmp_path / "m"), device="cpu")
    img = Image.new("RGB", (8, 8), (9, 9, 9))
    examples = [Example(img, "what digit", "one"), Example(img, "is the digit even than a", "no")]
    inputs = build_inputs(processor, examples, model=model)
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 2 and int(mask[0].sum()) == int(mask[1].sum()) - 4
    alone = build_inputs(processor, examples[:1], model=model)
    real = inputs["input_ids"][0][mask[0].bool()]
    assert real.tolist() == alone["input_ids"][0].tolist()


def test_transparent_pixels_are_composited_on_white(tmp_path):
    """RGBA as transformers' convert_to_rgb does it: a transparent pixel is white, not its hidden colour."""
    from skipit.empirical.data import to_rgb

    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (200, 10, 10, 255))
    assert np.asarray(to_rgb(rgba)).reshape(-1, 3).tolist() == [[255, 255, 255], [200, 10, 10]]
    half = Image.new("LA", (1, 1), (0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)  # black at alpha 128/255 over white
    rgba.save(tmp_path / "a.png")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"image": "a.png", "question": "q", "answer": "a"}) + "\n")
    examples, _ = load_jsonl(path)
    assert examples[0].image.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_images_are_scaled_not_saturated(tmp_path):
    from skipit.empirical.data import to_rgb

    arr = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 128, 255]
    img.save(tmp_path / "deep.png")  # reopens as a 16-bit (or 32-bit "I") grayscale
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"image": "deep.png", "question": "q", "answer": "a"}) + "\n")
    examples, _ = load_jsonl(path)
    assert np.asarray(examples[0].image)[0, :, 0].tolist() == [0, 128, 255]


def test_data_sha256_covers_reference_answers_but_keeps_old_fingerprints():
    from skipit.empirical.data import data_sha256

    a = Example(Image.new("RGB", (8, 8), (0, 0, 0)), "q", "a")
    b = Example(Image.new("RGB", (8, 8), (0, 0, 1)), "q", "a")
    assert data_sha256([a, b]) == SHA256_A_B  # no references: the fingerprint of before
    with_refs = Example(a.image, "q", "a", references=["a", "b"])
    other_refs = Example(a.image, "q", "a", references=["a", "c"])
    assert len({data_sha256([with_refs, b]), data_sha256([other_refs, b]), SHA256_A_B}) == 3
