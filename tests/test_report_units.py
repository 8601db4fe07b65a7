"""What the user reads names the independent units: the certify table and the plot titles count
the images (and questions) behind the bounds, not every example of the run."""

from __future__ import annotations

from skipit.commands.certify import units_note
from skipit.empirical.plots import behind_bounds


def _layer(layer, examples, units=None):
    vision = {"examples": examples, "zero_norm_tokens": 0}
    if units is not None:
        vision["units"] = units
    return {"layer": layer, "vision": vision}


def test_the_table_counts_images_and_their_questions():
    note = units_note([_layer(1, 48, 12), _layer(2, 48, 12)])
    assert note.startswith("12 images (48 questions) as the independent units")


def test_plot_titles_count_the_statistics_split_not_every_example():
    cert = {"data": {"num_examples": 100, "statistics_units": 10, "statistics_examples": 40},
            "layers": [_layer(1, 40, 10)]}
    assert behind_bounds(cert) == "10 images (40 questions)"
    old = {"data": {"num_examples": 100}, "layers": [_layer(1, 50), _layer(2, 48)]}  # a /2 certificate
    assert behind_bounds(old) == "50 examples"
