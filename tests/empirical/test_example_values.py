"""The capture engine keeps every example's values, which the betting bounds take as units.

Per layer and group, the per-example values (``m_e``, ``f_e(t)``) and the head-mean attention
shares must agree with the per-example sums the engine already kept (their mean is the
example-level mean), survive merge and JSON, and carry the labels the caller gives.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical import RunStatistics, capture_statistics  # noqa: E402
from skipit.empirical.testing import tiny_batch, tiny_model  # noqa: E402


def _capture(model, batches):
    with torch.inference_mode(), capture_statistics(model) as cap:
        for batch in batches:
            model(**batch)
    return cap.statistics


@pytest.fixture(scope="module")
def captured():
    model = tiny_model("llava", seed=0, num_layers=3)
    batches = [tiny_batch(model, 3, "left", seed=0), tiny_batch(model, 2, "right", seed=1)]
    return model, batches, _capture(model, batches)


def test_per_example_values_agree_with_the_per_example_sums(captured):
    _, _, stats = captured
    assert stats.example_ids.tolist() == [-1] * 5  # unlabelled until the caller labels them
    for layer in stats.layers():
        for group in ("vision", "text", "answer"):
            block = layer[group]
            values = np.asarray(block["example_values"])
            assert values.size == block["examples"]
            if values.size:
                assert values.mean() == pytest.approx(block["example_mean_cosine_distance"], rel=1e-12)
                fractions = np.asarray(block["example_fraction_values"]).mean(0)
                assert list(fractions) == pytest.approx(list(block["example_proximal_fraction"].values()), rel=1e-12)
        shares = np.asarray(layer["visual_attention_example_values"])
        assert shares.size == layer["visual_attention_examples"] == 5
        assert shares.mean() == pytest.approx(layer["visual_attention_mean_head"], rel=1e-12)


def test_labels_merge_and_json_keep_every_row(captured, tmp_path):
    model, batches, whole = captured
    first, second = _capture(model, batches[:1]), _capture(model, batches[1:])
    first.label_examples([10, 11, 12])
    second.label_examples([20, 21])
    merged = first.merge(second)
    assert merged.example_ids.tolist() == [10, 11, 12, 20, 21]
    for g in ("vision", "text", "answer"):
        np.testing.assert_allclose(merged.example_values[g], whole.example_values[g], rtol=1e-12, equal_nan=True)
    merged.save(tmp_path / "s.json")
    loaded = RunStatistics.load(tmp_path / "s.json")
    assert loaded == merged
    assert loaded.layers()[1]["vision"]["example_value_ids"] == [10, 11, 12, 20, 21]
    with pytest.raises(ValueError, match=r"`ids` must hold one label per captured example \(5\), got 2"):
        merged.label_examples([1, 2])


def test_statistics_written_before_the_values_load_without_them(captured):
    _, _, stats = captured
    old = stats.to_dict()
    del old["example_values"]
    loaded = RunStatistics.from_dict(old)
    assert loaded.example_ids.size == 0
    assert loaded.layers()[0]["vision"]["example_values"] == []
