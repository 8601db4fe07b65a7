"""The processor of a checkpoint, or a stand-in built from its image processor and tokenizer.

``load_processor`` returns the family's own processor when it can be assembled here
(``AutoProcessor``), else :class:`ImageTextInputs`. Either way the chat template is the
checkpoint's own: a directory that keeps it in ``chat_template.jinja`` or
``chat_template.json`` (as Qwen2.5-VL's and SmolVLM's do) gets it from there, not the
``USER: ... ASSISTANT:`` fallback. Family knowledge (markers around an image, placeholders per
image) comes from the adapter (``skipit.empirical.adapters``), never from here.
"""

from __future__ import annotations

import json
import os

__all__ = ["ImageTextInputs", "load_processor", "read_chat_template"]

CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


class ImageTextInputs:
    """Processor stand-in built from a family's image processor and tokenizer.

    Used where no processor class can be loaded: Qwen2.5-VL (``Qwen2_5_VLProcessor``
    needs torchvision, absent here) and directories that hold only a tokenizer and an
    image processor. Like the family processors, it expands each image placeholder of
    the prompt to one placeholder per vision token, as many as the adapter's
    ``image_token_counts`` says, between the adapter's ``image_markers``. ``image_prompt``
    (begin markers, placeholder, end markers) is what a prompt without chat template puts
    where the image goes; with a chat template the markers are the template's.
    """

    def __init__(self, image_processor, tokenizer, config, chat_template=None):
        from skipit.empirical.adapters import get_adapter

        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.config = config
        self.adapter = get_adapter(config)
        self.model_type = config.model_type
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        self.image_token = tokenizer.convert_ids_to_tokens(self.adapter.image_token_id(config))
        begin, end = self.adapter.image_markers(config, tokenizer)
        self.image_prompt = "".join(tokenizer.convert_ids_to_tokens(begin)) + self.image_token \
            + "".join(tokenizer.convert_ids_to_tokens(end))

    def apply_chat_template(self, conversation, add_generation_prompt=True, tokenize=False):
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template,
                                                  add_generation_prompt=add_generation_prompt, tokenize=tokenize)

    def __call__(self, images=None, text=None, return_tensors="pt", padding=True, add_special_tokens=True):
        texts = [text] if isinstance(text, str) else list(text)
        out = {}
        if images is not None:
            images = list(images)
            if self.adapter.nested_images and images and not isinstance(images[0], (list, tuple)):
                images = [[im] for im in images]
            flat = [im for group in images for im in group] if self.adapter.nested_images else images
            vision = self.image_processor(images=images, return_tensors=return_tensors)
            out.update(vision)
            counts = iter(self.adapter.image_token_counts(self.config, self.image_processor, vision, len(flat)))
            texts = [self._expand(t, counts) for t in texts]
        out.update(self.tokenizer(texts, return_tensors=return_tensors, padding=padding,
                                  add_special_tokens=add_special_tokens))
        return out

    def _expand(self, text, counts):
        parts = text.split(self.image_token)
        return parts[0] + "".join(self.image_token * next(counts) + part for part in parts[1:])


def read_chat_template(location, **hub):
    """The chat template a checkpoint keeps beside its tokenizer (``chat_template.jinja``, or the
    ``chat_template`` of ``chat_template.json``), from a local directory or the hub cache; None if none."""
    from transformers.utils import cached_file

    for name in CHAT_TEMPLATE_FILES:
        try:
            path = cached_file(location, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **hub)
        except OSError:
            path = None
        if not path or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if name.endswith(".json"):
            text = json.loads(text).get("chat_template")
        if text:
            return text
    return None


def load_processor(location, config, **hub):
    """The checkpoint's processor (``AutoProcessor``) or an :class:`ImageTextInputs` stand-in,
    with the checkpoint's chat template in either case when it keeps one."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.processing_utils import ProcessorMixin

    template = read_chat_template(location, **hub)
    local_without_processor = os.path.isdir(location) and not os.path.isfile(
        os.path.join(location, "processor_config.json"))
    if not local_without_processor:
        try:
            processor = AutoProcessor.from_pretrained(location, **hub)
        except (ValueError, AttributeError, ImportError, TypeError):
            processor = None  # a processor class that cannot be assembled here: build inputs ourselves
        if isinstance(processor, ProcessorMixin):
            if template and not getattr(processor, "chat_template", None):
                processor.chat_template = template
            return processor
    return ImageTextInputs(AutoImageProcessor.from_pretrained(location, **hub),
                           AutoTokenizer.from_pretrained(location, **hub), config, chat_template=template)
