"""One hook lifecycle (HookSet) and the one layer-range check."""

import numpy as np
import pytest
import torch

from skipit.empirical.hooks import Attributes, HookSet, LeftPadding, check_layer


def _count(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


class _Recorder(HookSet):
    def __init__(self, model, fail_after=None):
        self.model = model
        self.fail_after = fail_after
        self.seen = []
        self.cleaned = 0

    def _install(self):
        self.on_exit(self._clean)
        for i, layer in enumerate(self.model):
            if i == self.fail_after:
                raise RuntimeError("registration failed")
            self.forward_pre_hook(layer, lambda m, args, kwargs, i=i: self.seen.append(("pre", i)), with_kwargs=True)
            self.forward_hook(layer, lambda m, args, out, i=i: self.seen.append(("post", i)))

    def _clean(self):
        self.cleaned += 1


def _model():
    return torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3))


def test_hooks_run_inside_and_are_removed_on_exit():
    model = _model()
    with _Recorder(model) as rec:
        assert rec.active and _count(model) == 6
        model(torch.zeros(1, 3))
    assert rec.seen == [("pre", 0), ("post", 0), ("pre", 1), ("post", 1), ("pre", 2), ("post", 2)]
    assert _count(model) == 0 and not rec.active and rec.cleaned == 1


def test_hooks_are_removed_after_an_exception_inside_the_context():
    model = _model()
    rec = _Recorder(model)
    with pytest.raises(ZeroDivisionError):
        with rec:
            model.register_forward_hook(lambda *a: 1 / 0)  # the user's own hook: not ours to remove
            model(torch.zeros(1, 3))
    assert _count(model) == 1 and rec.cleaned == 1 and not rec.active


def test_hooks_registered_before_a_failing_install_are_removed():
    model = _model()
    rec = _Recorder(model, fail_after=2)
    with pytest.raises(RuntimeError, match="registration failed"):
        rec.__enter__()
    assert _count(model) == 0 and rec.cleaned == 1 and not rec.active


def test_reentering_an_active_set_is_refused_and_a_closed_one_can_be_reused():
    model = _model()
    rec = _Recorder(model)
    with rec:
        with pytest.raises(RuntimeError, match="_Recorder is already active; it is not re-entrant"):
            rec.__enter__()
        assert _count(model) == 6
    assert _count(model) == 0
    with rec:
        assert _count(model) == 6
    assert _count(model) == 0 and rec.cleaned == 2


def test_every_undo_step_runs_even_if_one_raises():
    model = _model()

    class Failing(HookSet):
        def _install(self):
            self.forward_hook(model[0], lambda *a: None)
            self.on_exit(lambda: 1 / 0)
            self.forward_hook(model[2], lambda *a: None)

    with pytest.raises(ZeroDivisionError):
        with Failing():
            pass
    assert _count(model) == 0


def test_nested_contexts_are_exited_with_the_set():
    model = _model()
    inner = _Recorder(model)

    class Outer(HookSet):
        def _install(self):
            self.enter(inner)

    with Outer():
        assert inner.active
    assert not inner.active and _count(model) == 0


def test_hooks_cannot_be_added_outside_the_context():
    with pytest.raises(RuntimeError, match="only be added while it is active"):
        HookSet().forward_hook(torch.nn.ReLU(), lambda *a: None)


@pytest.mark.parametrize("value", [1, 4, np.int64(2)])
def test_check_layer_accepts_integers_in_range(value):
    assert check_layer("layer", value, 1, 4) == int(value) and type(check_layer("layer", value, 1, 4)) is int


@pytest.mark.parametrize("value", [0, 5, True, 2.0, "2", None])
def test_check_layer_names_the_argument_the_range_and_the_value(value):
    with pytest.raises(ValueError, match=rf"^`entry` must be an integer in \[1, 4\], got {value!r}$".replace("(", r"\(")):
        check_layer("entry", value, 1, 4)


def test_attributes_are_set_inside_and_restored_after_an_exception():
    """A swapped submodule comes back as the same object in the same place of ``_modules``; an
    attribute the object did not have is deleted again; a plain value gets its old value."""
    model = _model()
    first, order = model[0], list(model._modules)
    model.flag = "old"
    with pytest.raises(ZeroDivisionError):
        with Attributes((model, "0", torch.nn.Identity()), (model, "flag", "new"), (model, "mark", 1)):
            assert isinstance(model[0], torch.nn.Identity) and model.flag == "new" and model.mark == 1
            1 / 0
    assert model[0] is first and list(model._modules) == order
    assert model.flag == "old" and not hasattr(model, "mark")


def test_an_attribute_set_twice_in_one_set_gets_its_first_value_back():
    obj = type("Obj", (), {})()
    obj.value = 0
    with Attributes((obj, "value", 1), (obj, "value", 2)):
        assert obj.value == 2
    assert obj.value == 0


class _Tokenizer:
    padding_side = "right"


def test_left_padding_pads_left_inside_and_restores_the_side_after_an_exception():
    tokenizer = _Tokenizer()
    processor = type("Processor", (), {"tokenizer": tokenizer})()
    with pytest.raises(ZeroDivisionError):
        with LeftPadding(processor) as tok:
            assert tok is tokenizer and tok.padding_side == "left"
            1 / 0
    assert tokenizer.padding_side == "right"


def test_left_padding_leaves_a_tokenizer_without_a_padding_side_alone():
    tokenizer = object()
    with LeftPadding(tokenizer) as tok:
        assert tok is tokenizer
