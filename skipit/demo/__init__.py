"""The bundled demo VLMs and their visual question answering data over sklearn's digits.

Two real ``LlavaForConditionalGeneration`` models (CLIP vision tower, projector, Llama decoder)
ship as package data, so ``skipit certify`` runs offline on any machine (:data:`DEMO_MODELS`):

* ``demo`` (the default): a 16-layer decoder pretrained as a language model on a synthetic
  text corpus (arithmetic on number words, comparisons, counting, copying), a pretrained vision
  tower, a projector aligned with both frozen, then everything tuned on visual questions that
  need the image and then text reasoning (:mod:`skipit.demo.questions`); answers are words,
  some several;
* ``demo-dense``: a 12-layer decoder trained only on four one-token question types, never a
  language model: its answer position reads the image in every layer (the negative control).

:mod:`skipit.demo.train` retrains either; each model directory holds its ``MODEL_CARD.md``
(task, recipe, split, held-out accuracy). The images are split once, by image, for both.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEMO_MODELS = {"demo": MODELS_DIR / "demo", "demo-dense": MODELS_DIR / "demo-dense"}
"""``--model`` name -> directory of each bundled demo model; ``demo`` is the default."""
DEFAULT_DEMO = "demo"
DEMO_MODEL_DIR = DEMO_MODELS[DEFAULT_DEMO]

QUESTION_TYPES = ("digit", "even", "greater", "choice")
SPLITS = ("train", "val", "test")
SPLIT_SEED = 20261125
"""Seed of the one permutation of image indices that defines the split (never changes)."""
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
"""Train / val / test fractions of the 1797 images."""
PROMPT_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"
CHOICE_LETTERS = ("A", "B", "C", "D")
DIGIT_WORDS = tuple(str(d) for d in range(10))

BUNDLED_DATASETS = {
    "digits-reason-test": {"model": "demo", "split": "test", "question_types": None, "seed": 0},
    "digits-reason-val": {"model": "demo", "split": "val", "question_types": None, "seed": 0},
    "digits-test": {"model": "demo-dense", "split": "test", "question_types": QUESTION_TYPES, "seed": 0},
    "digits-val": {"model": "demo-dense", "split": "val", "question_types": QUESTION_TYPES, "seed": 0},
}
"""Named data sets for ``skipit certify --data NAME``: keyword arguments of :func:`load_digits_vqa`
(``model`` names the demo model whose questions they are)."""
DEMO_DATA = {"demo": "digits-reason-test", "demo-dense": "digits-test"}
"""The bundled data set each demo model is certified on when ``--data`` is not given."""


def default_data_for(model: str | None) -> str | None:
    """The bundled data set ``--model`` runs on when ``--data`` is not given: the data of the demo
    model it names (None: the default demo), or None for any other model (which needs ``--data``)."""
    return DEMO_DATA.get(DEFAULT_DEMO if model is None else str(model))


def demo_model_dir(name: str = DEFAULT_DEMO) -> Path:
    """The directory of the bundled demo model ``name`` (a key of :data:`DEMO_MODELS`)."""
    if name not in DEMO_MODELS:
        raise ValueError(f"`name` must be one of {tuple(DEMO_MODELS)}, got {name!r}")
    return DEMO_MODELS[name]


def _require_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "the demo model needs the empirical extras: pip install 'skipit[empirical]'"
        ) from err


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float64), bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """Image indices of each split: disjoint, covering all 1797 images, fixed by SPLIT_SEED.

    The split is by image, so no test image (under any question) is seen in training.
    """
    _, labels = _digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_train = int(round(SPLIT_FRACTIONS[0] * len(labels)))
    n_val = int(round(SPLIT_FRACTIONS[1] * len(labels)))
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train:n_train + n_val]),
        "test": np.sort(order[n_train + n_val:]),
    }


def digit_image(index: int):
    """The digit image ``index`` of ``load_digits`` as an 8x8 greyscale PIL image (0..16 -> 0..255)."""
    from PIL import Image

    images, _ = _digits()
    pixels = np.rint(images[index] * (255.0 / 16.0)).astype(np.uint8)
    return Image.fromarray(pixels, mode="L")


def make_question(label: int, qtype: str, rng: np.random.Generator) -> dict:
    """One question of type ``qtype`` about a digit of class ``label``, drawn with ``rng``.

    Types: ``digit`` (answer the numeral), ``even`` (yes/no), ``greater`` (yes/no, threshold k
    uniform on 0..8), ``choice`` (four distinct digits, one correct, answered by its letter).
    """
    if qtype == "digit":
        return {"question": "which digit is shown?", "answer": DIGIT_WORDS[label], "choices": None}
    if qtype == "even":
        return {"question": "is the digit even?", "answer": "yes" if label % 2 == 0 else "no",
                "choices": None}
    if qtype == "greater":
        k = int(rng.integers(0, 9))
        return {"question": f"is the digit greater than {k}?",
                "answer": "yes" if label > k else "no", "choices": None}
    if qtype == "choice":
        others = rng.choice([d for d in range(10) if d != label], size=3, replace=False)
        options = [int(label), *map(int, others)]
        rng.shuffle(options)
        choices = [DIGIT_WORDS[d] for d in options]
        text = " ".join(f"{letter}) {c}" for letter, c in zip(CHOICE_LETTERS, choices))
        return {"question": f"which digit is shown? {text}",
                "answer": CHOICE_LETTERS[options.index(int(label))], "choices": list(CHOICE_LETTERS)}
    raise ValueError(f"`qtype` must be one of {QUESTION_TYPES}, got {qtype!r}")


def _check_types(question_types, known=QUESTION_TYPES) -> tuple[str, ...]:
    if question_types is None:
        return tuple(known)
    if isinstance(question_types, str):
        question_types = (question_types,)
    bad = [q for q in question_types if q not in known]
    if bad:
        raise ValueError(f"`question_types` must be among {tuple(known)}, got {bad!r}")
    return tuple(question_types)


def digits_vqa_records(split: str = "test", question_types=None, seed: int = 0,
                       model: str = "demo-dense") -> list[dict]:
    """Like :func:`load_digits_vqa` but with ``image_index`` instead of the PIL image (cheap)."""
    demo_model_dir(model)
    if model == "demo":
        return reasoning_records(split, question_types, seed)
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}")
    types = _check_types(question_types)
    _, labels = _digits()
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    records = []
    for index in split_indices()[split]:
        for qtype in types:
            record = make_question(int(labels[index]), qtype, rng)
            records.append({"image_index": int(index), "label": int(labels[index]), "type": qtype,
                            **record})
    return records


def reasoning_records(split: str = "test", question_types=None, seed: int = 0) -> list[dict]:
    """The ``demo`` model's visual questions over the ``split`` images, one per (image, type).

    Like :func:`digits_vqa_records` (same image split, images in index order, types in the
    order given, ``seed`` draws only the numbers in the questions) over
    :data:`skipit.demo.questions.VISUAL_TYPES`. Each record also names its ``metric``:
    ``exact`` (greedy generation) for the types whose answer can be several words, else ``letter``.
    """
    from skipit.demo.questions import MULTI_WORD_TYPES, VISUAL_TYPES, question

    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}")
    types = _check_types(question_types, VISUAL_TYPES)
    _, labels = _digits()
    rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    records = []
    for index in split_indices()[split]:
        for qtype in types:
            record = question(qtype, int(labels[index]), rng)
            records.append({"image_index": int(index), "label": int(labels[index]), "type": qtype,
                            "metric": "exact" if qtype in MULTI_WORD_TYPES else "letter", **record})
    return records


def load_digits_vqa(split: str = "test", question_types=None, seed: int = 0,
                    model: str = "demo-dense") -> list[dict]:
    """Visual question answering examples over the ``split`` images of sklearn's digits.

    One example per (image, question type), images in index order, types in the order given:
    the four one-token types of ``demo-dense`` (:data:`QUESTION_TYPES`) or, with
    ``model="demo"``, the eight of :data:`skipit.demo.questions.VISUAL_TYPES`
    (:func:`reasoning_records`). The image split is fixed (:func:`split_indices`); ``seed`` only
    draws the numbers and options in the questions, so the same arguments give the same list.

    Returns a list of ``{"image": PIL.Image, "question", "answer", "choices", "type"}`` (plus
    ``"metric"`` for ``demo``); ``question`` is the bare question (wrap it with :func:`prompt`).
    """
    out = []
    for rec in digits_vqa_records(split, question_types, seed, model):
        ex = {"image": digit_image(rec["image_index"]), "question": rec["question"],
              "answer": rec["answer"], "choices": rec["choices"], "type": rec["type"]}
        if "metric" in rec:
            ex["metric"] = rec["metric"]
        out.append(ex)
    return out


def prompt(question: str) -> str:
    """The prompt of either demo model for ``question``; the processor expands ``<image>`` to 16
    image tokens (and ``demo``'s tokenizer puts ``<s>`` in front)."""
    return PROMPT_TEMPLATE.format(question=question)


def export_jsonl(examples, directory) -> Path:
    """Write ``examples`` as PNG images plus ``data.jsonl`` in ``directory``; return the JSONL path.

    Each line is ``{"image": "images/00000.png", "question", "answer", "choices", "type"}``, the
    image path relative to the JSONL file (the format ``skipit certify --data`` reads).
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    path = directory / "data.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i, ex in enumerate(examples):
            for key in ("image", "question", "answer"):
                if key not in ex:
                    raise ValueError(f"example {i} lacks the field {key!r}")
            rel = f"images/{i:05d}.png"
            ex["image"].save(directory / rel)
            line = {"image": rel, "question": ex["question"], "answer": ex["answer"],
                    "choices": ex.get("choices")}
            if "type" in ex:
                line["type"] = ex["type"]
            fh.write(json.dumps(line) + "\n")
    return path


def load_demo_model(dtype=None, model_dir=None, name: str = DEFAULT_DEMO):
    """The bundled demo model ``name`` (``demo`` or ``demo-dense``) and its processor, offline.

    Returns ``(model, processor)``: a ``LlavaForConditionalGeneration`` in eval mode (16-layer
    decoder for ``demo``, 12-layer for ``demo-dense``) and its ``LlavaProcessor``. ``dtype`` (a
    ``torch.dtype`` or name such as ``"float32"``) defaults to float32; ``model_dir`` overrides
    the directory (a retrained copy).
    """
    _require_torch()
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model_dir = Path(model_dir) if model_dir is not None else demo_model_dir(name)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no demo model in {model_dir}: retrain it with "
            f"`python -m skipit.demo.train --model {name} --out {model_dir}`"
        )
    if dtype is None:
        dtype = torch.float32
    elif isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"`dtype` must name a torch dtype such as 'float32', got {dtype!r}")
        dtype = getattr(torch, dtype)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
    model.eval()
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    return model, processor
