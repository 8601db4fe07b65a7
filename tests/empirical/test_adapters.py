"""Adapters answer where each family keeps its layers, norm, head and vision tokens.

Each claim is checked against the model's own forward on a tiny random model:
the vision mask against the positions the model overwrote with image features,
the decoder layers against ``output_hidden_states``, the final norm and lm head
against the logits.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from skipit.empirical.adapters import VLMAdapter, get_adapter, supported_model_types  # noqa: E402
from skipit.empirical.testing import (  # noqa: E402
    IMAGE_ID, TINY_MODEL_TYPES, save_tiny_vlm, tiny_batch, tiny_config, tiny_model,
)

NUM_LAYERS = 3


@pytest.fixture(scope="module", params=TINY_MODEL_TYPES)
def model_and_batch(request):
    model = tiny_model(request.param, seed=0, num_layers=NUM_LAYERS)
    batch = tiny_batch(model, batch_size=3, padding_side="left", seed=1)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return model, batch, out


def test_every_tiny_family_has_an_adapter():
    assert set(TINY_MODEL_TYPES) <= set(supported_model_types())
    assert {"llava", "llava_next", "qwen2_5_vl"} <= set(supported_model_types())


def test_unknown_model_type_lists_supported_ones():
    config = tiny_config("llava")
    config.model_type = "not_a_vlm"
    with pytest.raises(ValueError, match=r"no adapter for model_type 'not_a_vlm'; supported model types: .*llava"):
        get_adapter(config)


def test_adapter_from_config_equals_adapter_from_model(model_and_batch):
    model, _, _ = model_and_batch
    by_model, by_config = get_adapter(model), get_adapter(model.config)
    assert isinstance(by_model, VLMAdapter)
    assert type(by_model) is type(by_config)
    assert by_model.model_type == model.config.model_type == by_config.model_type


def test_decoder_layers_are_the_n_layers_of_output_hidden_states(model_and_batch):
    model, _, out = model_and_batch
    adapter = get_adapter(model)
    assert adapter.num_layers(model) == NUM_LAYERS == len(out.hidden_states) - 1
    assert adapter.decoder_layers(model) is adapter.language_model(model).layers
    # the inner base model answers the same
    assert adapter.decoder_layers(model.model) is adapter.decoder_layers(model)


def test_hook_on_layer_i_gives_hidden_state_i_plus_1_and_final_norm_gives_the_last(model_and_batch):
    model, batch, out = model_and_batch
    adapter = get_adapter(model)
    seen = {}
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(i, o))
               for i, layer in enumerate(adapter.decoder_layers(model))]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for h in handles:
            h.remove()
    for i in range(NUM_LAYERS - 1):
        torch.testing.assert_close(seen[i], out.hidden_states[i + 1], rtol=0, atol=0)
    normed = adapter.final_norm(model)(seen[NUM_LAYERS - 1])
    torch.testing.assert_close(normed, out.hidden_states[-1], rtol=1e-6, atol=1e-6)
    logits = adapter.lm_head(model)(normed)
    torch.testing.assert_close(logits, out.logits, rtol=1e-5, atol=1e-5)


def test_vision_mask_is_where_the_model_wrote_image_features(model_and_batch):
    model, batch, out = model_and_batch
    adapter = get_adapter(model)
    mask = adapter.vision_mask(batch["input_ids"], model.config)
    assert mask.dtype == torch.bool and mask.shape == batch["input_ids"].shape
    assert int(mask.sum()) > 0
    with torch.no_grad():
        token_embeds = adapter.embed_tokens(model)(batch["input_ids"])
    changed = (out.hidden_states[0] - token_embeds).abs().amax(-1) > 0
    assert torch.equal(changed, mask)


def test_vision_mask_counts_image_placeholders_only(model_and_batch):
    model, batch, _ = model_and_batch
    adapter = get_adapter(model)
    assert adapter.image_token_id(model.config) == IMAGE_ID
    mask = adapter.vision_mask(batch["input_ids"], model.config)
    assert torch.equal(mask, batch["input_ids"] == IMAGE_ID)


def test_self_attention_has_the_four_projections(model_and_batch):
    model, _, _ = model_and_batch
    adapter = get_adapter(model)
    for layer in adapter.decoder_layers(model):
        attn = adapter.self_attention(layer)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            assert isinstance(getattr(attn, name), torch.nn.Linear)
    text = adapter.text_config(model.config)
    assert attn.q_proj.out_features == text.num_attention_heads * attn.head_dim
    assert attn.k_proj.out_features == text.num_key_value_heads * attn.head_dim
    assert adapter.rotary_embedding(model) is adapter.language_model(model).rotary_emb


def test_wrong_module_errors_name_the_family():
    adapter = get_adapter(tiny_config("llava"))
    with pytest.raises(ValueError, match=r"'llava' vision-language model with a `language_model`"):
        adapter.language_model(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"ForConditionalGeneration model \(it holds `lm_head`\)"):
        adapter.lm_head(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen2_vl"])
def test_qwen_needs_mm_token_type_ids_for_3d_positions(model_type):
    """Qwen2.5-VL silently falls back to 1-D positions without them; Qwen2-VL refuses."""
    model = tiny_model(model_type, num_layers=1)
    batch = tiny_batch(model, batch_size=2, padding_side="right")
    types = get_adapter(model).extra_forward_kwargs(batch["input_ids"], model.config)["mm_token_type_ids"]
    assert torch.equal(types, (batch["input_ids"] == IMAGE_ID).long())
    without = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        if model_type == "qwen2_vl":
            with pytest.raises(ValueError, match="mm_token_type_ids"):
                model(**without)
        else:
            assert not torch.allclose(model(**batch).logits, model(**without).logits)


def test_gemma3_token_type_ids_mark_image_blocks():
    model = tiny_model("gemma3", num_layers=1)
    batch = tiny_batch(model, batch_size=2, padding_side="right")
    assert torch.equal(batch["token_type_ids"], (batch["input_ids"] == IMAGE_ID).long())
    without = {k: v for k, v in batch.items() if k != "token_type_ids"}
    with torch.no_grad():  # bidirectional image blocks change the image tokens' states
        assert not torch.allclose(model(**batch).logits, model(**without).logits)


@pytest.mark.parametrize("model_type", ["llava", "llava_next"])
def test_saved_tiny_vlm_reloads_offline_with_processor(model_type, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_model(model_type, seed=3, num_layers=2)
    save_tiny_vlm(model_type, tmp_path, model=model)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    processor = AutoProcessor.from_pretrained(tmp_path)
    image = Image.fromarray((np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251).astype("uint8"))
    inputs = processor(images=image, text="<s> what digit <image> is the answer :", return_tensors="pt")
    assert int((inputs["input_ids"] == IMAGE_ID).sum()) > 0
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_saved_qwen_tokenizer_and_image_processor_build_inputs(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_tiny_vlm("qwen2_5_vl", tmp_path, num_layers=2)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    tokenizer, image_processor = AutoTokenizer.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)
    pixels = image_processor(Image.fromarray(np.full((32, 32, 3), 90, dtype="uint8")), return_tensors="pt")
    n_tokens = int(pixels["image_grid_thw"].prod()) // 4
    text = "<s> what digit <image_start> " + "<image> " * n_tokens + "<image_end> is the answer :"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    kwargs = get_adapter(model).extra_forward_kwargs(ids, model.config)
    with torch.no_grad():
        logits = model(input_ids=ids, **pixels, **kwargs).logits
    assert logits.shape == (1, ids.shape[1], 128) and bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("model_type", ["gemma3", "idefics3", "deepseek_vl"])
def test_saved_tiny_vlm_reloads_offline_with_tokenizer_and_image_processor(model_type, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_model(model_type, num_layers=1)
    save_tiny_vlm(model_type, tmp_path, model=model)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    tokenizer, image_processor = AutoTokenizer.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)
    pixels = image_processor(Image.fromarray(np.full((32, 32, 3), 90, dtype="uint8")), return_tensors="pt")
    n_tokens = int((tiny_batch(model, 1)["input_ids"] == IMAGE_ID).sum())
    ids = tokenizer("<s> what digit " + "<image> " * n_tokens + "is the answer :", return_tensors="pt")["input_ids"]
    kwargs = get_adapter(model).extra_forward_kwargs(ids, model.config)
    inputs = dict(input_ids=ids, pixel_values=pixels["pixel_values"], **kwargs)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


@pytest.mark.parametrize("model_type,begin,end", [
    ("llava", [], []), ("deepseek_vl", [], []),
    ("qwen2_5_vl", ["<image_start>"], ["<image_end>"]),
    ("gemma3", ["<image_start>"], ["<image_end>"]),
    ("idefics3", ["<fake_token_around_image>"], ["<fake_token_around_image>"]),
])
def test_image_markers_come_from_the_adapter(model_type, begin, end):
    from skipit.empirical.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    got_begin, got_end = get_adapter(tiny_config(model_type)).image_markers(tiny_config(model_type), tok)
    assert tok.convert_ids_to_tokens(got_begin) == begin and tok.convert_ids_to_tokens(got_end) == end


def test_family_knowledge_lives_only_in_the_adapters():
    """No marker, token-count field or family name is spelled out by the loading and processor modules."""
    import inspect

    from skipit.empirical import loading, processors

    family_fields = ("boi_token", "eoi_token", "vision_start_token_id", "vision_end_token_id", "mm_tokens_per_image",
                     "scale_factor", "fake_token_around_image", "image_grid_thw", "merge_size")
    for module in (loading, processors):
        code = inspect.getsource(module)
        found = [f for f in family_fields if f in code]
        assert not found, f"{module.__name__} holds family knowledge: {found}"
    assert "model_type ==" not in inspect.getsource(processors) + inspect.getsource(loading)
