"""Every public name the package advertises resolves, and importing it stays cheap."""

import json
import os
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


# ------------------------------------------------------------------ public names are what they say

_PUBLIC_NAMES = r"""
import importlib, json, pkgutil, sys, types
out = []
for pkg_name in ("skipit", "skipit.empirical"):
    pkg = importlib.import_module(pkg_name)
    lazy = getattr(pkg, "_LAZY", {})
    for name in pkg.__all__:
        if name.startswith("__"):
            continue
        ns = {}
        exec(f"from {pkg_name} import {name} as obj", ns)  # the first import of the name, as a user writes it
        obj = ns["obj"]
        out.append([pkg_name, name, isinstance(obj, types.ModuleType), callable(obj),
                    getattr(obj, "__module__", None), lazy.get(name), getattr(obj, "__name__", None)])
print(json.dumps(out))
"""


def _public_names(first=""):
    code = first + _PUBLIC_NAMES
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _assert_functions(rows):
    assert len(rows) >= 15
    for pkg, name, is_module, is_callable, module, lazy_home, own_name in rows:
        assert not is_module, f"{pkg}.{name} is a module, not what its docstring says"
        assert is_callable, f"{pkg}.{name} is not callable"
        assert module == lazy_home, f"{pkg}.{name} comes from {module}, its _LAZY home is {lazy_home}"
        assert own_name == name, f"{pkg}.{name} is {own_name}"


def test_every_public_name_is_its_function_or_class_in_a_fresh_interpreter():
    """``from skipit.empirical import certify`` (and every other name of ``skipit.__all__`` and
    ``skipit.empirical.__all__``) gives the function or class itself, defined where ``_LAZY``
    says, on its first import in a fresh interpreter."""
    pytest.importorskip("torch")
    _assert_functions(_public_names())


def test_public_names_stay_functions_after_every_submodule_is_imported():
    """Importing ``skipit.empirical.X`` binds the attribute ``X`` of the package to the module: a
    public name equal to a submodule's name would then be the module. Every submodule imported
    first, every public name is still its function."""
    pytest.importorskip("torch")
    first = ("import importlib, pkgutil, skipit, skipit.empirical\n"
             "for m in pkgutil.walk_packages(skipit.__path__, 'skipit.'):\n"
             "    if not m.name.startswith(('skipit.demo.train', 'skipit.__main__')):\n"
             "        importlib.import_module(m.name)\n")
    _assert_functions(_public_names(first))


def test_no_public_name_is_a_submodule_name():
    """The class of the shadowing bug: no name of ``skipit.__all__`` or ``skipit.empirical.__all__``
    is also the name of a module or package beside it."""
    import pkgutil

    import skipit.empirical as empirical

    for pkg in (skipit, empirical):
        submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
        assert not set(pkg.__all__) & submodules, (pkg.__name__, set(pkg.__all__) & submodules)


def test_no_import_cycles_among_skipit_modules():
    """No module of ``skipit`` imports, directly or through others, a module that imports it back,
    counting imports inside functions (a lazy import closes a circle too) and leaving out
    ``if TYPE_CHECKING:`` blocks; ``from skipit.empirical import name`` counts as an import of
    the module that ``_LAZY`` names."""
    cycles = import_cycles(os.path.dirname(os.path.dirname(os.path.abspath(skipit.__file__))))
    assert cycles == []


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    """A lazy import from ``a`` to ``b`` and one back is found (so the test above can fail)."""
    pkg = tmp_path / "skipit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from skipit.b import g\n")
    (pkg / "b.py").write_text("from skipit import a\n\ndef g():\n    pass\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from skipit.a import f\n")
    assert import_cycles(str(tmp_path)) == [["skipit.a", "skipit.b"]]


def import_cycles(root):
    """The strongly connected components (more than one module) of the import graph of the
    ``skipit`` package under ``root``, each sorted."""
    import ast

    modules = {}
    for directory, _, files in os.walk(os.path.join(root, "skipit")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path

    def lazy_names(path):
        for node in ast.parse(open(path, encoding="utf-8").read()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
                return ast.literal_eval(node.value)
        return {}

    graph = {}
    for dotted, path in modules.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in node.names:
                    if f"{base}.{a.name}" in modules:
                        edges.add(f"{base}.{a.name}")
                    elif base in modules:
                        edges.add(base)
                        if modules[base].endswith("__init__.py") and a.name in lazy_names(modules[base]):
                            edges.add(lazy_names(modules[base])[a.name])
        edges.discard(dotted)
        graph[dotted] = edges

    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)
