"""Images as the independent units (skipit.empirical.units): identity by pixels, per-image
values, splits and samples that keep every question of an image together."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from skipit.empirical.data import Example
from skipit.empirical.units import sample_units, split_units, unit_ids, unit_key, unit_means, unit_sizes


def _image(value, size=(4, 4)):
    return Image.fromarray(np.full(size + (3,), value, dtype=np.uint8), mode="RGB")


def test_the_same_picture_under_two_file_names_is_one_unit():
    a = Example(_image(7), "q1", "yes", source="a.png")
    b = Example(_image(7), "q2", "no", source="copy-of-a.png")
    c = Example(_image(8), "q1", "yes", source="a.png")  # same name, other pixels
    assert unit_key(a) == unit_key(b) != unit_key(c)
    assert unit_ids([c, a, b, c]) == [0, 1, 1, 0]


def test_pixels_of_another_size_or_mode_are_another_unit():
    small, large = _image(0, (4, 4)), _image(0, (4, 8))
    grey = small.convert("L")
    keys = {unit_key(Example(img, "q", "a")) for img in (small, large, grey)}
    assert len(keys) == 3


def test_unit_means_average_each_images_questions():
    values = [1.0, 0.0, 0.5, 0.25, 0.75]
    ids = [2, 0, 2, 0, 0]
    assert unit_means(values, ids).tolist() == pytest.approx([1 / 3, 0.75])  # id 1 absent: left out
    assert unit_sizes(ids).tolist() == [3, 0, 2]
    assert unit_means([], []).size == 0


def test_unit_means_refuse_values_that_do_not_match_the_questions():
    with pytest.raises(ValueError, match=r"^`values` must have one entry per question \(3\), got 2$"):
        unit_means([0.0, 1.0], [0, 0, 1])


@pytest.mark.parametrize("images,fraction", [(10, 0.5), (11, 0.5), (40, 0.3), (7, 0.25), (2, 0.9)])
def test_split_is_disjoint_by_image_seeded_and_of_the_stated_size(images, fraction):
    ids = np.repeat(np.arange(images), 3)[np.random.default_rng(1).permutation(3 * images)]
    stats, calib = split_units(ids, fraction, seed=3)
    assert sorted(stats + calib) == list(range(ids.size))
    assert not set(ids[stats]) & set(ids[calib])  # no image on both sides
    n_stats = len(set(ids[stats]))
    assert n_stats == min(max(round((1 - fraction) * images), 1), images - 1)
    assert split_units(ids, fraction, seed=3) == (stats, calib)
    assert any(split_units(ids, fraction, seed=s)[0] != stats for s in range(4, 12))


def test_split_of_one_image_keeps_it_for_the_statistics():
    assert split_units([0, 0], 0.5, seed=0) == ([0, 1], [])


def test_split_refuses_a_fraction_outside_the_open_unit_interval():
    with pytest.raises(ValueError, match=r"^`calibration_fraction` must be in \(0, 1\), got 1.0$"):
        split_units([0, 1], 1.0, seed=0)


def test_sample_takes_whole_images_at_random_never_the_first_rows():
    ids = np.repeat(np.arange(50), 4)  # a file sorted by image: 4 questions each
    chosen = sample_units(ids, 20, seed=0)
    assert chosen == sorted(chosen) and len(chosen) == 20
    images = set(ids[chosen])
    assert all(np.sum(ids[chosen] == u) == 4 for u in images)  # every question of a sampled image
    assert chosen != list(range(20))
    assert sample_units(ids, 20, seed=0) == chosen and sample_units(ids, 20, seed=1) != chosen


def test_sample_reaches_the_asked_questions_with_the_fewest_images():
    ids = [0, 0, 0, 1, 2, 2]
    for n in range(1, 6):
        chosen = sample_units(ids, n, seed=5)
        sizes = [np.sum(np.asarray(ids)[chosen] == u) for u in set(np.asarray(ids)[chosen])]
        assert len(chosen) >= n and len(chosen) - max(sizes) < n  # without its last image it would not reach n


@pytest.mark.parametrize("n", [0, 6, 7])
def test_sample_of_none_or_of_everything(n):
    ids = [0, 0, 0, 1, 2, 2]
    assert sample_units(ids, n, seed=0) == ([] if n == 0 else list(range(6)))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_sample_refuses_a_question_count_that_is_not_a_natural_number(bad):
    with pytest.raises(ValueError, match=r"^`questions` must be an integer >= 0, got "):
        sample_units([0, 1], bad, seed=0)
