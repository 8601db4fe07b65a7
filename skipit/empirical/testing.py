"""Tiny random VLMs of every supported family, padded batches, and offline saves.

Everything here is built from configs (random weights, no download), small enough
that a forward pass takes milliseconds on a CPU:

>>> from skipit.empirical.testing import tiny_model, tiny_batch
>>> model = tiny_model("llava", seed=0, num_layers=4)
>>> batch = tiny_batch(model, batch_size=3, padding_side="left", seed=0)
>>> out = model(**batch)                       # a TinyBatch is a dict of model inputs
>>> batch.answer_positions                     # LongTensor[B]: last non-padding position

Vocabulary of every tiny model (128 ids): 0 pad, 1 bos, 2 eos, 3..119 words,
120..127 special tokens (image placeholder 127, video 126, begin/start-of-image 125,
end-of-image 124, Idefics3 ``<fake_token_around_image>`` 123).

``tiny_examples`` returns unpadded single examples and ``collate`` pads any list of
them (left or right), so "a padded batch == one example at a time" can be tested.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np
import torch

from skipit.empirical.adapters import get_adapter
from skipit.empirical.capture import answer_positions

VOCAB_SIZE = 128
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_WORD_ID, LAST_WORD_ID = 3, 119
IMAGE_ID, VIDEO_ID, BOI_ID, EOI_ID, FAKE_AROUND_IMAGE_ID = 127, 126, 125, 124, 123

#: model types ``tiny_config`` builds, each tested in ``tests/empirical``.
TINY_MODEL_TYPES = (
    "llava", "llava_next", "qwen2_5_vl", "qwen2_vl", "gemma3", "idefics3", "smolvlm", "deepseek_vl",
)

_TEXT = dict(
    vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
)
_VISION_VIT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8)
_QWEN_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4,
                    spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, window_size=16,
                    fullatt_block_indexes=[1])
_QWEN_PATCH_DIM = 3 * 2 * 4 * 4  # channels * temporal_patch_size * patch_size^2


def _check_model_type(model_type: str) -> None:
    if model_type not in TINY_MODEL_TYPES:
        raise ValueError(
            f"`model_type` must be one of {', '.join(TINY_MODEL_TYPES)}, got {model_type!r}"
        )


def tiny_config(model_type: str, num_layers: int = 4, **overrides: Any):
    """A tiny ``transformers`` config of the family ``model_type`` with ``num_layers`` decoder layers.

    Keyword ``overrides`` go to the text config when they name one of its fields
    (``hidden_size``, ``num_attention_heads``, ...), to the vision config when given as
    ``vision_config={...}`` (merged), and to the top-level config otherwise.
    """
    import transformers as tf

    _check_model_type(model_type)
    if num_layers < 1:
        raise ValueError(f"`num_layers` must be >= 1, got {num_layers}")
    text = dict(_TEXT, num_hidden_layers=num_layers)
    vision_over = overrides.pop("vision_config", {}) or {}
    text_keys = set(text) | {"head_dim", "rope_parameters", "sliding_window", "layer_types", "rms_norm_eps",
                             "tie_word_embeddings", "attention_bias"}
    top = {}
    for key, value in overrides.items():
        (text if key in text_keys else top)[key] = value

    if model_type in ("llava", "llava_next"):
        vision = dict(_VISION_VIT, model_type="clip_vision_model", projection_dim=32, **vision_over)
        common = dict(vision_config=vision, text_config=dict(text, model_type="llama"), image_token_index=IMAGE_ID)
        if model_type == "llava":
            patches = (vision["image_size"] // vision["patch_size"]) ** 2
            return tf.LlavaConfig(**common, image_seq_length=patches, **top)
        side = vision["image_size"]
        pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
        return tf.LlavaNextConfig(**common, image_grid_pinpoints=pinpoints, **top)
    if model_type in ("qwen2_5_vl", "qwen2_vl"):
        head_dim = text["hidden_size"] // text["num_attention_heads"]
        quarter = head_dim // 2 // 4
        text.setdefault("rope_parameters", dict(rope_type="default", rope_theta=10000.0,
                                                mrope_section=[head_dim // 2 - 2 * quarter, quarter, quarter]))
        vision = dict(_QWEN_VISION, out_hidden_size=text["hidden_size"], **vision_over)
        if model_type == "qwen2_vl":
            vision = dict(depth=vision["depth"], embed_dim=vision["hidden_size"], hidden_size=text["hidden_size"],
                          num_heads=vision["num_heads"], mlp_ratio=2, patch_size=vision["patch_size"],
                          spatial_merge_size=vision["spatial_merge_size"],
                          temporal_patch_size=vision["temporal_patch_size"])
        cls = tf.Qwen2_5_VLConfig if model_type == "qwen2_5_vl" else tf.Qwen2VLConfig
        return cls(text_config=text, vision_config=vision, image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
                   vision_start_token_id=BOI_ID, vision_end_token_id=EOI_ID, **top)
    if model_type == "gemma3":
        text.setdefault("head_dim", text["hidden_size"] // text["num_attention_heads"])
        text.setdefault("sliding_window", 8)
        text.setdefault("layer_types", ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                        for i in range(num_layers)])
        vision = dict(_VISION_VIT, model_type="siglip_vision_model", **vision_over)
        return tf.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                               image_token_index=IMAGE_ID, boi_token_index=BOI_ID, eoi_token_index=EOI_ID, **top)
    if model_type in ("idefics3", "smolvlm"):
        vision = dict(_VISION_VIT, **vision_over)
        cls = tf.Idefics3Config if model_type == "idefics3" else tf.SmolVLMConfig
        return cls(text_config=dict(text, model_type="llama"), vision_config=vision, image_token_id=IMAGE_ID,
                   scale_factor=2, pad_token_id=PAD_ID, **top)
    # deepseek_vl
    vision = dict(_VISION_VIT, model_type="siglip_vision_model", **vision_over)
    return tf.DeepseekVLConfig(text_config=dict(text, model_type="llama"), vision_config=vision,
                               image_token_id=IMAGE_ID, **top)


_MODEL_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "gemma3": "Gemma3ForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
    "deepseek_vl": "DeepseekVLForConditionalGeneration",
}


def model_class(model_type: str):
    """The ``...ForConditionalGeneration`` class of a family."""
    import transformers as tf

    _check_model_type(model_type)
    return getattr(tf, _MODEL_CLASSES[model_type])


def tiny_model(model_type: str, seed: int = 0, num_layers: int = 4, dtype: torch.dtype = torch.float32,
               attn_implementation: str | None = None, **overrides: Any):
    """A tiny random model of the family, in eval mode (default attention: sdpa).

    Same ``seed`` and arguments give bit-identical weights.
    """
    config = tiny_config(model_type, num_layers=num_layers, **overrides)
    torch.manual_seed(seed)
    model = model_class(model_type)(config)
    if model_type == "gemma3":
        # transformers initialises Gemma 3's projector to zeros: every image token would embed to 0.
        with torch.no_grad():
            model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.5)
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
    return model.to(dtype).eval()


class TinyBatch(dict):
    """A dict of model inputs (``model(**batch)``) that also carries, per example,
    ``answer_positions`` (LongTensor[B], the last non-padding position) and ``lengths``."""

    answer_positions: torch.Tensor
    lengths: torch.Tensor
    padding_side: str


def _image_tokens_and_pixels(model, model_type: str, index: int, gen: torch.Generator) -> tuple[int, dict]:
    """Number of vision placeholders and the pixel inputs of one example's single image."""
    config = model.config
    if model_type in ("qwen2_5_vl", "qwen2_vl"):
        vis = config.vision_config
        grid = [(1, 4, 4), (1, 4, 8), (1, 8, 4)][index % 3]
        patches = grid[0] * grid[1] * grid[2]
        dim = 3 * vis.temporal_patch_size * vis.patch_size ** 2
        tokens = patches // vis.spatial_merge_size ** 2
        return tokens, {"pixel_values": torch.randn(patches, dim, generator=gen),
                        "image_grid_thw": torch.tensor([grid])}
    side = config.vision_config.image_size
    if model_type == "llava_next":
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        size = [(side, side), (side, 2 * side), (2 * side, side), (side + 8, side - 8)][index % 4]
        tiles = image_size_to_num_patches(size, config.image_grid_pinpoints, side)
        pixels = torch.randn(1, tiles, 3, side, side, generator=gen)
        sizes = torch.tensor([size])
        with torch.no_grad():
            feats = model.model.get_image_features(pixel_values=pixels.to(model.dtype), image_sizes=sizes)
        feats = getattr(feats, "pooler_output", feats)
        return int(feats[0].shape[0]), {"pixel_values": pixels[0], "image_sizes": sizes[0]}
    pixels = torch.randn(3, side, side, generator=gen)
    patches = (side // config.vision_config.patch_size) ** 2
    if model_type == "llava":
        return patches, {"pixel_values": pixels}
    if model_type == "gemma3":
        return int(config.mm_tokens_per_image), {"pixel_values": pixels}
    if model_type in ("idefics3", "smolvlm"):
        return patches // config.scale_factor ** 2, {"pixel_values": pixels[None]}
    return patches, {"pixel_values": pixels}  # deepseek_vl


def _markers(model_type: str) -> tuple[list[int], list[int]]:
    if model_type in ("qwen2_5_vl", "qwen2_vl", "gemma3"):
        return [BOI_ID], [EOI_ID]
    if model_type in ("idefics3", "smolvlm"):
        return [FAKE_AROUND_IMAGE_ID], [FAKE_AROUND_IMAGE_ID]
    return [], []


def tiny_examples(model, num_examples: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``num_examples`` unpadded single examples (``input_ids`` 1-D plus the example's pixel inputs).

    Layout: bos, 1-4 words, [image-begin marker], the image's placeholders,
    [image-end marker], 2-7 words; example i has a different length from its neighbours.
    """
    if num_examples < 1:
        raise ValueError(f"`num_examples` must be >= 1, got {num_examples}")
    model_type = model.config.model_type
    _check_model_type(model_type)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    before, after = _markers(model_type)
    examples = []
    for i in range(num_examples):
        tokens, pixels = _image_tokens_and_pixels(model, model_type, i, gen)
        prefix = rng.integers(FIRST_WORD_ID, LAST_WORD_ID + 1, size=int(rng.integers(1, 5))).tolist()
        suffix = rng.integers(FIRST_WORD_ID, LAST_WORD_ID + 1, size=2 + (i % 3) + int(rng.integers(0, 3))).tolist()
        ids = [BOS_ID] + prefix + before + [IMAGE_ID] * tokens + after + suffix
        examples.append({"input_ids": torch.tensor(ids), **pixels})
    return examples


def collate(model, examples: Sequence[dict[str, torch.Tensor]], padding_side: str = "left") -> TinyBatch:
    """Pad ``examples`` (from :func:`tiny_examples`) into one batch, with the family's extra inputs."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}")
    model_type = model.config.model_type
    adapter = get_adapter(model)
    lengths = torch.tensor([len(e["input_ids"]) for e in examples])
    width = int(lengths.max())
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        ids[row, cols] = example["input_ids"]
        mask[row, cols] = 1
    batch = TinyBatch(input_ids=ids, attention_mask=mask)
    dtype = model.dtype
    if model_type in ("qwen2_5_vl", "qwen2_vl"):
        batch["pixel_values"] = torch.cat([e["pixel_values"] for e in examples]).to(dtype)
        batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in examples])
    elif model_type == "llava_next":
        tiles = max(e["pixel_values"].shape[0] for e in examples)
        pix = torch.zeros(len(examples), tiles, *examples[0]["pixel_values"].shape[1:])
        for row, example in enumerate(examples):
            pix[row, : example["pixel_values"].shape[0]] = example["pixel_values"]
        batch["pixel_values"] = pix.to(dtype)
        batch["image_sizes"] = torch.stack([e["image_sizes"] for e in examples])
    else:
        batch["pixel_values"] = torch.stack([e["pixel_values"] for e in examples]).to(dtype)
    batch.update(adapter.extra_forward_kwargs(ids, model.config))
    if model_type not in ("qwen2_5_vl", "qwen2_vl"):
        # Positions count real tokens only (as generate() does), so a left-padded example sees the
        # same rotary angles as alone; Qwen computes its 3-D positions from the mask itself.
        batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    batch.answer_positions = answer_positions(mask)
    batch.lengths = lengths
    batch.padding_side = padding_side
    return batch


def tiny_batch(model, batch_size: int = 2, padding_side: str = "left", seed: int = 0) -> TinyBatch:
    """A padded batch of ``batch_size`` examples of different lengths for ``model``'s family."""
    return collate(model, tiny_examples(model, batch_size, seed=seed), padding_side=padding_side)


# ---------------------------------------------------------------- offline save
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "what", "digit",
          "is", "the", "even", "odd", "greater", "than", "yes", "no", "image", "shows", "a", "?", "answer", ":"]


def tiny_vocab() -> dict[str, int]:
    """The word-level vocabulary of every tiny model: id -> see module docstring."""
    vocab = {"<pad>": PAD_ID, "<s>": BOS_ID, "</s>": EOS_ID}
    words = _WORDS + [f"w{i}" for i in range(FIRST_WORD_ID + len(_WORDS), LAST_WORD_ID + 1)]
    for i, word in enumerate(words):
        vocab[word] = FIRST_WORD_ID + i
    for token, idx in [("<unused120>", 120), ("<unused121>", 121), ("<unused122>", 122),
                       ("<fake_token_around_image>", FAKE_AROUND_IMAGE_ID), ("<image_end>", EOI_ID),
                       ("<image_start>", BOI_ID), ("<video>", VIDEO_ID), ("<image>", IMAGE_ID)]:
        vocab[token] = idx
    return vocab


def tiny_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :func:`tiny_vocab` (whitespace word level, offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = tiny_vocab()
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = [t for t in vocab if t.startswith("<")]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<pad>", additional_special_tokens=specials[3:])
    fast.padding_side = "left"
    return fast


def save_tiny_vlm(model_type: str, directory: str | os.PathLike, seed: int = 0, num_layers: int = 4,
                  model=None) -> str:
    """Save a tiny model and an offline processor so ``from_pretrained(directory)`` works offline.

    * ``llava``, ``llava_next``: the family processor (tokenizer + CLIP / LLaVA-NeXT image
      processor), reloadable with ``AutoProcessor.from_pretrained(directory)``; ``"<image>"``
      in the text is expanded to the right number of placeholders.
    * ``qwen2_5_vl``, ``qwen2_vl``: ``Qwen2_5_VLProcessor`` needs torchvision (absent beside
      torch 2.13), so the tokenizer and the ``Qwen2VLImageProcessor`` are saved side by side:
      load them with ``AutoTokenizer`` / ``AutoImageProcessor``; the image processor returns
      ``pixel_values`` and ``image_grid_thw``; write ``<image_start>`` + ``<image>`` x
      ``prod(image_grid_thw) // 4`` + ``<image_end>`` in the text and pass
      ``mm_token_type_ids`` from the adapter's ``extra_forward_kwargs``.
    * other families: the tokenizer and the family's image processor, saved side by side.

    Returns the directory as a string. ``model`` (optional) is saved instead of a new one.
    """
    import transformers as tf

    _check_model_type(model_type)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    if model is None:
        model = tiny_model(model_type, seed=seed, num_layers=num_layers)
    model.save_pretrained(directory)
    tokenizer = tiny_tokenizer()
    config = model.config
    side = getattr(config.vision_config, "image_size", 32)
    if model_type == "llava":
        image_processor = tf.CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        processor = tf.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                      patch_size=config.vision_config.patch_size,
                                      vision_feature_select_strategy=config.vision_feature_select_strategy,
                                      image_token="<image>", num_additional_image_tokens=1)
        processor.save_pretrained(directory)
    elif model_type == "llava_next":
        image_processor = tf.LlavaNextImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side},
            image_grid_pinpoints=config.image_grid_pinpoints)
        processor = tf.LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                          patch_size=config.vision_config.patch_size,
                                          vision_feature_select_strategy=config.vision_feature_select_strategy,
                                          image_token="<image>", num_additional_image_tokens=1)
        processor.save_pretrained(directory)
    else:
        tokenizer.save_pretrained(directory)
        if model_type in ("qwen2_5_vl", "qwen2_vl"):
            vis = config.vision_config
            image_processor = tf.Qwen2VLImageProcessor(
                patch_size=vis.patch_size, temporal_patch_size=vis.temporal_patch_size,
                merge_size=vis.spatial_merge_size,
                size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64})
        elif model_type in ("gemma3", "deepseek_vl"):
            image_processor = tf.SiglipImageProcessor(size={"height": side, "width": side})
        else:
            image_processor = tf.Idefics3ImageProcessor(
                size={"longest_edge": side}, max_image_size={"longest_edge": side}, do_image_splitting=False)
        image_processor.save_pretrained(directory)
    with open(os.path.join(directory, "skipit_tiny.json"), "w") as fh:
        json.dump({"model_type": model_type, "seed": seed, "num_layers": num_layers,
                   "vocab": "skipit.empirical.testing.tiny_vocab"}, fh, indent=1)
    return directory


__all__ = [
    "TINY_MODEL_TYPES", "TinyBatch", "answer_positions", "collate", "model_class", "save_tiny_vlm",
    "tiny_batch", "tiny_config", "tiny_examples", "tiny_model", "tiny_tokenizer", "tiny_vocab",
]
