"""Every public name the package advertises resolves, and importing it stays cheap."""

import subprocess
import sys

import pytest

import skipit


def test_every_lazy_name_of_skipit_empirical_resolves():
    pytest.importorskip("torch")
    import skipit.empirical as empirical

    for name in empirical.__all__:
        assert getattr(empirical, name) is not None, name


def test_skipit_late_entry_and_early_exit_are_the_context_managers():
    pytest.importorskip("torch")
    from skipit.empirical import skipping

    assert skipit.late_entry is skipping.late_entry
    assert skipit.early_exit is skipping.early_exit


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        skipit.nonexistent  # noqa: B018


def test_import_skipit_and_skipit_empirical_import_no_torch():
    code = "import skipit, skipit.empirical, sys; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


THEORY_MODULES = ("confidence", "distances", "entropy", "functional", "informational", "late_entry", "lemmas", "pid",
                  "redundancy", "spherical", "symbolic")

EMPIRICAL_FUNCTIONS = {
    "skipping": ("late_entry", "early_exit", "freeze", "skip", "resolve_adapter"),
    "certificate": ("certificate_layers", "decide", "split_indices", "freeze_order", "candidate_chains",
                    "binomial_p_value", "fixed_sequence", "verification_block", "build_certificate",
                    "certificate_schema", "load_certificate", "check_certificate_model"),
    "certify_run": ("certify", "learn", "write_certificate", "layer_contributions", "run_versions"),
    "evaluate": ("predict", "evaluate", "validate", "certificate_verdicts", "accuracy", "layer_statistics",
                 "parse_layer_grid", "token_counts"),
    "flops": ("tokens_per_layer", "keys_per_layer", "prefill_flops", "decode_flops", "generation_flops",
              "vision_flops", "predicted_speedup", "config_flops_fraction", "example_token_counts"),
    "metrics": ("normalise_answer", "normalise_vqa", "letter_score", "exact_score", "vqa_score", "anls_score",
                "check_metric", "score_one", "normalise_for"),
    "answers": ("predict_answers", "predict_answers_timed", "score", "comparable_answers", "answers_changed"),
    "data": ("load_examples", "build_inputs", "build_prompt", "load_jsonl", "check_examples_for", "data_sha256"),
    "loading": ("load_model_and_processor", "resolve_model", "resolve_device", "input_device"),
    "files": ("atomic_write_text", "atomic_write_bytes", "prepare_output_dir", "output_directory"),
    "weights": ("weights_fingerprint", "check_weight_files"),
}


def _unannotated(module, names):
    import inspect

    return [name for name in names
            if inspect.signature(getattr(module, name)).return_annotation is inspect.Signature.empty]


@pytest.mark.parametrize("name", THEORY_MODULES)
def test_every_public_theory_function_declares_its_return_type(name):
    """Each function a theory module exports (its ``__all__``; ``expr`` for ``symbolic``) has a
    return annotation, so a new bound added without one fails here (py.typed promises types)."""
    import importlib
    import inspect

    module = importlib.import_module(f"skipit.theory.{name}")
    names = getattr(module, "__all__", ["expr"])
    functions = [n for n in names if inspect.isfunction(getattr(module, n))]
    assert functions, name
    assert _unannotated(module, functions) == []


@pytest.mark.parametrize("name", sorted(EMPIRICAL_FUNCTIONS))
def test_key_empirical_functions_declare_their_return_types(name):
    """The documented entry points of ``skipit.empirical`` (skipping context managers, certify,
    evaluate, data, loading ...) have return annotations."""
    pytest.importorskip("torch")
    import importlib

    module = importlib.import_module(f"skipit.empirical.{name}")
    assert _unannotated(module, EMPIRICAL_FUNCTIONS[name]) == []
