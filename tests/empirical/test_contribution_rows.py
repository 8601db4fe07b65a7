"""ShortV's layer contribution per question (certify_run.layer_contribution_rows): the study's cache."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def demo():
    from skipit.demo import DEMO_DATA, load_demo_model
    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.data import load_examples

    model, processor = load_demo_model(name="demo")
    examples, _ = load_examples(DEMO_DATA["demo"], limit=10)
    return model, processor, examples, get_adapter(model)


def test_the_mean_of_the_per_question_rows_is_the_layer_contribution(demo):
    from skipit.empirical.certify_run import layer_contribution_rows, layer_contributions

    model, processor, examples, adapter = demo
    rows = layer_contribution_rows(model, processor, examples, adapter, batch_size=4)
    assert rows.shape == (adapter.num_layers(model), len(examples))
    means = layer_contributions(model, processor, examples, adapter, batch_size=4)
    assert list(means) == list(range(1, rows.shape[0] + 1))
    np.testing.assert_allclose(rows.mean(axis=1), list(means.values()), rtol=1e-9, atol=1e-12)


def test_columns_follow_the_questions_whatever_the_batching(demo):
    from skipit.empirical.certify_run import layer_contribution_rows

    model, processor, examples, adapter = demo
    rows = layer_contribution_rows(model, processor, examples, adapter, batch_size=3)
    backwards = layer_contribution_rows(model, processor, examples[::-1], adapter, batch_size=3)
    assert not np.allclose(rows[0], rows[0][::-1])  # the questions differ, so an unordered column would show
    # other batches pad differently: equal up to float32 round-off
    np.testing.assert_allclose(backwards, rows[:, ::-1], rtol=1e-4, atol=1e-7)
