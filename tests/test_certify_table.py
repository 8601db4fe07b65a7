"""The certify table names its independent units, and says why a layer has none (not "0 examples")."""

from skipit.commands.certify import units_note


def _layer(layer, examples, zero_norm=0):
    return {"layer": layer, "vision": {"examples": examples, "zero_norm_tokens": zero_norm}}


def test_units_are_the_examples_every_layer_measured():
    assert units_note([_layer(1, 12), _layer(2, 12)]) == "12 examples as the independent units"


def test_a_layer_whose_vision_states_are_all_zero_is_named_with_the_reason():
    """A zero-initialised projector: the embedding's vision states are 0, so layer 1 (which
    compares layer 1 with the embedding) measures no vision distance; the count is the other
    layers', not layer 1's 0."""
    note = units_note([_layer(1, 0, zero_norm=64), _layer(2, 12), _layer(3, 12)])
    assert note == "12 examples as the independent units; layer 1: none, vision states all zero (norm 0)"


def test_every_layer_without_vision_statistics_says_why_instead_of_zero_units():
    assert units_note([_layer(1, 0, 64), _layer(2, 0, 64)]) == \
        "no vision statistics in any layer: vision states all zero (norm 0)"
    assert units_note([_layer(1, 0), _layer(2, 0)]) == "no vision statistics in any layer: no vision tokens"
    assert "layers 1, 3: none" in units_note([_layer(1, 0, 8), _layer(2, 5), _layer(3, 0, 8)])
