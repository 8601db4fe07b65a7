"""Small Hugging Face datasets for the tests: digit images in an MCQ layout (AI2D's) and a free-form
layout with 10 reference answers (TextVQA's), and a fake hub cache holding datasets as a download
would leave them, so a hub id is read offline."""

from __future__ import annotations

import numpy as np
from PIL import Image

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
OPTION_SHIFTS = (2, 0, 5, 7)
"""The options of an MCQ row are the words of ``label + shift``: the right word is option B."""


def digits(n):
    """The first ``n`` sklearn digit images (16 x 16, grayscale) and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = [Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8), mode="L").resize((16, 16)) for i in range(n)]
    return images, [int(t) for t in d.target[:n]]


def mcq_dataset(n=6, question="which digit is shown?", answers=None):
    """AI2D's layout: ``options`` a list of texts, ``answer`` the index of an option as a string
    (default ``"1"``, option B, the right word)."""
    import datasets

    images, labels = digits(n)
    options = [[WORDS[(label + k) % 10] for k in OPTION_SHIFTS] for label in labels]
    return datasets.Dataset.from_dict(
        {"image": images, "question": [question] * n, "options": options,
         "answer": ["1"] * n if answers is None else list(answers)},
        features=datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                    "options": datasets.List(datasets.Value("string")),
                                    "answer": datasets.Value("string")}))


def ten_references(label):
    """TextVQA-style references of a digit: the word six times, the numeral twice, two others."""
    return [WORDS[label]] * 6 + [str(label)] * 2 + ["a digit", "unsure"]


def free_form_dataset(n=4, answers=None, question="what is written?", question_column="question"):
    """TextVQA's layout: ``answers`` holds 10 reference answers per row (default :func:`ten_references`)."""
    import datasets

    images, labels = digits(n)
    answers = [ten_references(label) for label in labels] if answers is None else answers
    return datasets.Dataset.from_dict(
        {"image": images, question_column: [question] * n, "answers": answers},
        features=datasets.Features({"image": datasets.Image(), question_column: datasets.Value("string"),
                                    "answers": datasets.List(datasets.Value("string"))}))


def fake_hub_cache(tmp_path, monkeypatch, repos, *, commit="0123abcd"):
    """A Hugging Face hub cache under ``tmp_path / "hub"`` holding each ``{"org/name": dataset}`` of
    ``repos`` as a downloaded snapshot (``data/test-00000-of-00001.parquet``, ``refs/main``), made the
    cache of this test (``HF_HUB_CACHE``, ``HF_DATASETS_CACHE``, offline). Returns the cache folder."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    for repo_id, dataset in repos.items():
        repo = cache / ("datasets--" + repo_id.replace("/", "--"))
        (repo / "snapshots" / commit / "data").mkdir(parents=True)
        dataset.to_parquet(str(repo / "snapshots" / commit / "data" / "test-00000-of-00001.parquet"))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache
