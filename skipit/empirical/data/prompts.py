"""The text a model sees: multiple-choice rendering, the chat-templated prompt, and the batched,
checked model inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from skipit.empirical.data.examples import LETTERS, Example, _raise_bad

if TYPE_CHECKING:
    import torch

FALLBACK_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"

MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."
MCQ_TEMPLATE = "{question}\n{options}\n" + MCQ_INSTRUCTION
"""How a row with choices is shown to the model (``--mcq-template``; ``{question}`` and
``{options}``, the lettered options one a line as ``A. text``). It is LLaVA-1.5's
multiple-choice prompt (``llava/eval/model_vqa_mmbench.py`` and the ScienceQA evaluation:
options ``A. ...`` one a line, then "Answer with the option's letter from the given choices
directly.") and lmms-eval's default for AI2D, MMStar and MMBench (``post_prompt``)."""


def render_mcq(question: str, choices: Sequence[str], template: str = MCQ_TEMPLATE) -> str:
    """The question with its lettered options, one a line (``A. text``), in ``template``."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return template.format(question=question, options=options)


def check_mcq_template(template: str) -> str:
    """``template`` if it is a format string with exactly the fields ``{question}`` and ``{options}``."""
    from string import Formatter

    from skipit.empirical.settings import SettingError

    fields_wanted = {"fields": "{question} and {options}"}  # braces of user and format text: shown verbatim
    try:
        fields = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise SettingError("{mcq_template} must be a format string with {fields}, got {got}",
                           {**fields_wanted, "got": f"{template!r} ({err})"}) from None
    if fields != {"question", "options"}:
        found = ", ".join("{" + f + "}" for f in sorted(fields)) or "none"
        raise SettingError("{mcq_template} must use exactly the fields {fields}, got {got}",
                           {**fields_wanted, "got": f"{template!r} (fields: {found})"})
    return template


def question_text(example: Example) -> str:
    """The question as the model sees it: verbatim (a multiple-choice row of a dataset was
    rendered with its lettered options on loading, :func:`render_mcq`). ``choices`` are
    metadata (the allowed answers)."""
    return example.question


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def build_prompt(processor: Any, example: Example) -> str:
    """The prompt string: the processor's chat template when it has one (one user turn with
    the image then the question, generation prompt added), else ``USER: <image>\\n{question} ASSISTANT:``."""
    template = getattr(processor, "chat_template", None)
    if template is None:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    text = question_text(example)
    if template and hasattr(processor, "apply_chat_template"):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    image_prompt = getattr(processor, "image_prompt", None) or getattr(processor, "image_token", None) or "<image>"
    return FALLBACK_TEMPLATE.replace("<image>", image_prompt).format(question=text)


def _text_kwargs(processor, prompts):
    """``add_special_tokens=False`` when every prompt already begins with the tokenizer's BOS
    (a chat template writing ``{{ bos_token }}``, as Gemma 3's and Llama 3's do): tokenising it
    with special tokens would put a second BOS in front."""
    bos = getattr(_tokenizer(processor), "bos_token", None)
    if bos and all(p.startswith(bos) for p in prompts):
        return {"add_special_tokens": False}
    return {}


def build_inputs(processor: Any, examples: Sequence[Example], model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Model inputs (dict of tensors) for a batch of examples, padded to the longest prompt.

    Prompts end at the last prompt token (the answer position the statistics use). Never a
    second BOS (:func:`_text_kwargs`). ``model`` lets the family adapter shape the call (one
    image list per sample where its processor wants that, ``nested_images``) and add what its
    forward needs (e.g. Qwen2.5-VL ``mm_token_type_ids``, ``extra_forward_kwargs``); a prompt
    longer than the model's context then raises :class:`skipit.errors.SkipitError` naming the example.
    """
    prompts = [build_prompt(processor, ex) for ex in examples]
    images = [ex.image for ex in examples]
    adapter = None
    if model is not None:
        from skipit.empirical.adapters import get_adapter

        adapter = get_adapter(model)
        if adapter.nested_images:
            images = [[im] for im in images]
    inputs = dict(processor(images=images, text=prompts, return_tensors="pt", padding=True,
                            **_text_kwargs(processor, prompts)))
    if adapter is not None:
        _check_context(adapter, model.config, inputs, examples)
        inputs.update(adapter.extra_forward_kwargs(inputs["input_ids"], model.config))
    return inputs


def _prompt_lengths(inputs):
    mask = inputs.get("attention_mask")
    if mask is None:
        return [int(inputs["input_ids"].shape[-1])] * int(inputs["input_ids"].shape[0])
    return [int(n) for n in mask.sum(dim=-1).tolist()]


def _too_long(adapter, config, inputs, examples):
    """``(limit, [(source, prompt tokens), ...])``: the examples longer than the model's context."""
    limit = adapter.context_length(config)
    if limit is None:
        return None, []
    return limit, [(ex.source or f"example {i}", n)
                   for i, (ex, n) in enumerate(zip(examples, _prompt_lengths(inputs))) if n > limit]


def _check_context(adapter, config, inputs, examples):
    from skipit.empirical.settings import SettingError

    limit, long = _too_long(adapter, config, inputs, examples)
    if long:
        listing = ", ".join(f"{src} ({n} tokens)" for src, n in long[:5])
        more = f" and {len(long) - 5} more" if len(long) > 5 else ""
        raise SettingError(f"prompt longer than the model's context of {limit} tokens: {{examples}}; shorten the "
                           "question or pass {skip_bad=True} to leave such examples out",
                           {"examples": listing + more})


def check_examples_for(model: torch.nn.Module, processor: Any, examples: Sequence[Example],
                       skip_bad: bool = False) -> tuple[list[Example], list[tuple[str, str]]]:
    """The examples this model can take, checked one by one before any measurement.

    Each example must pass its family's image check (``adapter.image_problem``, e.g. Qwen2.5-VL's
    aspect-ratio limit of 200), go through the processor alone, and fit the model's context
    (``adapter.context_length``). Returns ``(kept, skipped)`` with ``skipped`` a list of
    ``(source, reason)``; without ``skip_bad`` any problem raises
    :class:`skipit.errors.SkipitError` listing every bad example.
    """
    from skipit.empirical.adapters import get_adapter
    from skipit.errors import SkipitError

    adapter = get_adapter(model)
    kept, skipped = [], []
    for i, ex in enumerate(examples):
        name = ex.source or f"example {i}"
        reason = adapter.image_problem(ex.image, model.config)
        if reason is None:
            try:
                inputs = build_inputs(processor, [ex])  # no model: the context is checked here
            except SkipitError as err:  # a refusal skipit itself words (e.g. split tiles)
                reason = str(err).splitlines()[0]
            except Exception as err:  # the processor's own refusal, whatever its type
                reason = f"the processor refuses it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            else:
                limit, long = _too_long(adapter, model.config, inputs, [ex])
                if long:
                    reason = f"prompt of {long[0][1]} tokens, longer than the model's context of {limit}"
        if reason is None:
            kept.append(ex)
        else:
            skipped.append((name, reason))
    if skipped and not skip_bad:
        _raise_bad(skipped, None, "", header=f"{len(skipped)} example(s) this model cannot take")
    if not kept:
        raise SkipitError("no example left that this model can take")
    return kept, skipped
