"""The demo model's attention shares on the vision tokens, recomputed without skipit.

The answer query's head-mean attention share on the vision tokens is computed here from the
model's own eager attention maps, read by plain forward hooks on each layer's attention module,
with its own arithmetic; it must agree with skipit's :class:`AttentionProbe` (which recomputes
the row from hooked q/k projections under sdpa) and with the per-layer figures the model card
quotes (``measurements.json``, written by ``python -m skipit.demo.measure``).
"""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.demo import DEMO_MODELS, load_digits_vqa, prompt  # noqa: E402

N_IMAGES = 8
"""Test images scored (8 questions each: 64 questions)."""
PROBE_TOLERANCE = 1e-5
"""Eager softmax in float32 against the probe's float64 recomputation."""
CARD_TOLERANCE = 0.06
"""Per layer, subset mean against the card's mean over all 2872 test questions (sampling error)."""


@pytest.fixture(scope="module")
def batch():
    from transformers import AutoProcessor

    examples = load_digits_vqa("test", model="demo")[:8 * N_IMAGES]
    processor = AutoProcessor.from_pretrained(DEMO_MODELS["demo"], local_files_only=True)
    inputs = processor(images=[e["image"].convert("RGB") for e in examples],
                       text=[prompt(e["question"]) for e in examples], padding=True, return_tensors="pt")
    return inputs


def _plain_hook_shares(inputs):
    """(questions, layers) head-mean attention share of the last prompt position on the image tokens."""
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(DEMO_MODELS["demo"], attn_implementation="eager",
                                                          local_files_only=True).eval()
    rows = []

    def keep_row(module, args, output):
        weights = output[1]  # eager attention returns (output, weights (B, heads, S, S))
        rows.append(weights[:, :, -1, :].double())

    layers = model.model.language_model.layers
    handles = [layer.self_attn.register_forward_hook(keep_row) for layer in layers]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    assert len(rows) == len(layers)
    image = (inputs["input_ids"] == model.config.image_token_id).double()  # (B, S)
    assert int(image.sum(1).min()) == 16
    shares = [(row * image[:, None, :]).sum(-1).mean(1) for row in rows]  # sum over keys, mean over heads
    for row in rows:  # each head's row is a distribution over the unpadded keys
        assert torch.allclose(row.sum(-1), torch.ones_like(row.sum(-1)), atol=1e-5)
    return torch.stack(shares, 1)


def _probe_shares(inputs):
    from skipit.demo import load_demo_model
    from skipit.empirical.attention import AttentionProbe, vision_attention_mass
    from skipit.empirical.adapters import get_adapter

    model, _ = load_demo_model(name="demo")
    adapter = get_adapter(model)
    vision = adapter.vision_mask(inputs["input_ids"], model.config)
    got = {}
    probe = AttentionProbe(model, adapter, lambda layer, probs: got.__setitem__(
        layer, vision_attention_mass(probs, vision).mean(1)))
    probe.set_query_positions(torch.full((inputs["input_ids"].shape[0],), inputs["input_ids"].shape[1] - 1))
    with torch.no_grad(), probe:
        model(**inputs)
    return torch.stack([got[layer] for layer in sorted(got)], 1)


def test_plain_hook_attention_shares_equal_skipits_probe(batch):
    plain = _plain_hook_shares(batch)
    probe = _probe_shares(batch)
    assert plain.shape == probe.shape == (8 * N_IMAGES, 16)
    assert torch.allclose(plain, probe, atol=PROBE_TOLERANCE, rtol=0), (plain - probe).abs().max()


def test_plain_hook_attention_shares_match_the_card(batch):
    figures = json.loads((DEMO_MODELS["demo"] / "measurements.json").read_text())
    plain = _plain_hook_shares(batch).mean(0)
    card = torch.tensor(figures["attention_share"], dtype=torch.float64)
    assert torch.allclose(plain, card, atol=CARD_TOLERANCE, rtol=0), list(zip(plain.tolist(), card.tolist()))
