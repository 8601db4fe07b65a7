"""The settings of the run layer: one frozen dataclass per command, the one source of every
default, range and check.

Each field is declared with :func:`setting`: its default, its :class:`Check` (the allowed
range or choices), its help text and, where it is not ``--name-with-dashes``, its
command-line flag. The dataclass checks every field when it is made
(:class:`SettingError`, naming the parameter, its range and the value); the command line
(:mod:`skipit.commands`) builds its options from the same fields
(:func:`add_setting_options`), reads them back (:func:`settings_from_args`), and prints a
library error with flags in place of parameter names (:meth:`SettingError.render` with
:func:`flag_of`): the one place where a parameter becomes a flag.

* :class:`CertifySettings`: ``skipit certify`` (:func:`skipit.empirical.certify`);
* :class:`EvaluateSettings`: ``skipit evaluate`` (:func:`skipit.empirical.evaluate.evaluate`);
* :class:`SkipSettings`: ``skipit skip``.

No torch here: the command-line parsers import this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skipit.errors import SkipitError

__all__ = [
    "SettingError", "Check", "setting", "field_check", "parse_layer_grid", "check_setting", "flag_of", "add_setting_options", "settings_from_args",
    "RunSettings", "CertifySettings", "EvaluateSettings", "SkipSettings",
    "COSINE_DISTANCE_RANGE", "FREEZE_ORDERS", "FASTV_RATIOS",
]

from skipit.empirical.modes import EVALUATE_MODES, SKIP_MODES, VERIFY_MODES
from skipit.empirical.stats import DEFAULT_THRESHOLDS

COSINE_DISTANCE_RANGE = 2.0  # rho(x, y) = 1 - cos(x, y) lies in [0, 2]
FREEZE_ORDERS = ("redundancy", "contribution")
"""How the freeze chain is ordered: ``redundancy``, the certified vision redundancy ``U_l``
ascending (the paper's statistic); ``contribution``, ShortV's layer contribution (the mean
``KL(full || layer l frozen)`` of the answer distribution on ``order_examples`` examples of
the statistics split) ascending. Both are computed on the statistics split only, so
fixed-sequence testing stays valid for either."""


# --------------------------------------------------------------------------------------
# errors that name a parameter
# --------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+(?:\.\w+)?)(?:=(True|False))?\}")  # {name}, {name.field}, {name=False}


class SettingError(SkipitError, ValueError):
    """A parameter (or a combination of them) that must change, in one line.

    ``template`` is the message with every parameter it names written ``{name}`` (a field of one:
    ``{columns.image}``; a switch: ``{name=False}`` / ``{name=True}``): ``str(err)`` writes them as the library
    calls them (`` `batch_size` ``, `` `verify=False` ``), :meth:`render` as the caller's
    names (the command line's flags: ``--batch-size``, ``--no-verify``). ``parameter`` is the
    first parameter named. A :class:`ValueError` for library callers and a
    :class:`skipit.errors.SkipitError` (exit code 2, no traceback) for the command line.

    ``verbatim``: ``{name: text}`` for user text (rows of a data set, a format string) that may
    hold braces: the template says ``{name}`` where it goes, and both renderings write ``text``
    as it is, never reading a ``{...}`` inside it as a parameter."""

    def __init__(self, template: str, verbatim: Mapping[str, str] | None = None):
        self.template = template
        self.verbatim = dict(verbatim or {})
        found = next((m for m in _PLACEHOLDER.finditer(template) if m.group(1) not in self.verbatim), None)
        self.parameter = found.group(1) if found else None
        super().__init__(self.render())

    def render(self, name: Callable[[str, bool | None], str] | None = None) -> str:
        """The message with each ``{parameter}`` written by ``name(parameter, switch)`` (``switch``
        the ``True``/``False`` of ``{parameter=False}``, else None; default: `` `parameter` ``) and
        each ``{name}`` of ``verbatim`` as its text."""
        def library(param, switch):
            return f"`{param}`" if switch is None else f"`{param}={switch}`"

        def write(m):
            if m.group(1) in self.verbatim and m.group(2) is None:
                return self.verbatim[m.group(1)]
            return (name or library)(m.group(1), None if m.group(2) is None else m.group(2) == "True")

        return _PLACEHOLDER.sub(write, self.template)


# --------------------------------------------------------------------------------------
# checks and fields
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """An allowed range: ``ok(value)`` and the words ``requirement`` ("an integer >= 1")."""

    requirement: str
    ok: Callable[[Any], bool]
    choices: tuple | None = None
    verb: str = "be"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy's integers too


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: int) -> Check:
    """An integer ``>= low``."""
    return Check(f"in the integers >= {low}", lambda v: _is_int(v) and v >= low)


def interval(low: float, high: float, *, closed: str = "") -> Check:
    """A real number in the interval from ``low`` to ``high``; ``closed``: which ends are
    included (``""`` open, ``"low"``, ``"high"``, ``"both"``)."""
    lo_in, hi_in = closed in ("low", "both"), closed in ("high", "both")
    text = f"in {'[' if lo_in else '('}{low:g}, {high:g}{']' if hi_in else ')'}"
    return Check(text, lambda v: _is_real(v) and (low <= v if lo_in else low < v) and (v <= high if hi_in else v < high))


def one_of(choices: Iterable[Any]) -> Check:
    """One of ``choices``."""
    choices = tuple(choices)
    return Check("in {" + ", ".join(map(str, choices)) + "}", lambda v: v in choices, choices)


def optional(check: Check) -> Check:
    """None or ``check``."""
    return Check(f"None or {check.requirement}", lambda v: v is None or check.ok(v), check.choices)


BOOLEAN = Check("True or False", lambda v: isinstance(v, bool))
ANY_INT = Check("in the integers", _is_int)
NON_NEGATIVE_REAL = Check("a number >= 0", lambda v: _is_real(v) and v >= 0)
TEXT = Check("a string", lambda v: isinstance(v, str))


def setting(default: Any, help: str, check: Check, *, flag: str | None = None, metavar: str | None = None,
            cli: bool = True, scale: float | None = None, group: str | None = None, required: bool = False) -> Any:
    """A settings field: ``default``, its ``check``, the ``help`` of its option (the CLI adds
    "(default: ...)"), its ``flag`` (default ``--name-with-dashes``; a bool gets
    ``--no-...`` too) and ``metavar``. ``cli=False``: no option (set by the command from
    elsewhere). ``scale``: the option's value is the field's times ``scale`` (a fraction
    given in points: 100; the field's range must be [0, 1]). ``group``: the heading of the
    option in ``--help``. ``required``: the option must be given (no default on the command line)."""
    meta = {"help": help, "check": check, "flag": flag, "metavar": metavar, "cli": cli, "scale": scale,
            "group": group, "required": required}
    if isinstance(default, (list, dict, set)):
        raise TypeError("a setting's default must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


def check_setting(name: str, value: Any, check: Check) -> None:
    """Raise :class:`SettingError` ``{name} must be <requirement>, got <value>`` unless ``check`` allows ``value``."""
    if not check.ok(value):
        shown = list(value) if isinstance(value, tuple) else value
        raise SettingError(f"{{{name}}} must {check.verb} {check.requirement}, got {{got}}", {"got": repr(shown)})


def field_check(cls: type, name: str) -> Check:
    """The :class:`Check` of the field ``name`` of the settings class ``cls`` (the one range of that
    parameter, for library functions that take it as an argument)."""
    return next(f.metadata["check"] for f in dataclasses.fields(cls) if f.name == name)


class _Settings:
    """Checks every field of a settings dataclass against its :func:`setting` check."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                value = getattr(self, f.name)
                if isinstance(value, list):  # a list is a tuple to a frozen dataclass
                    value = tuple(value)
                    object.__setattr__(self, f.name, value)
                check_setting(f.name, value, check)
        self._check_together()

    def _check_together(self):
        """Checks that involve several fields (none by default)."""

    def replace(self, **changes: Any):
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------
# the settings of each command
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSettings(_Settings):
    """How the examples go through the model (every command): ``batch_size`` examples per
    forward, at most ``max_batch_tokens`` padded prompt tokens per batch (None: no cap),
    ``max_new_tokens`` greedy tokens of a free-form answer (the command line takes it from
    the data set)."""

    batch_size: int = setting(16, "examples per forward", at_least(1), metavar="B")
    max_batch_tokens: int | None = setting(
        None, "at most N padded prompt tokens (batch size x longest prompt) per batch, so long image sequences "
              "(LLaVA-NeXT, Qwen2.5-VL) fit in memory; a longer example runs alone (default: no cap)",
        optional(at_least(1)), metavar="N")
    max_new_tokens: int | None = setting(None, "greedy tokens of a free-form answer (None: the data set's)",
                                         optional(at_least(1)), cli=False)


FASTV_RATIOS = (0.25, 0.5)
"""FastV keep ratios R among the verification's candidates (FastV's paper uses K = 2, R = 0.5)."""


def _ratios_check():
    return Check("non-empty values in (0, 1)", lambda values: isinstance(values, tuple) and len(values) > 0
                 and all(_is_real(r) and 0.0 < r < 1.0 for r in values))


def _thresholds_check():
    def ok(values):
        return (isinstance(values, tuple) and len(values) > 0
                and all(_is_real(t) and 0.0 < t <= COSINE_DISTANCE_RANGE for t in values))
    return Check("non-empty values in (0, 2]", ok)


@dataclass(frozen=True)
class CertifySettings(RunSettings):
    """Everything that decides a certificate, with its defaults.

    Decision (the paper's verdicts): ``eps`` redundancy level of Definitions 1-2 (default
    0.05); ``proximal_t`` the ``t`` of Definition 2 (default 0.05, the paper's Figure 4);
    ``attention_threshold`` the largest allowed head-averaged visual attention share of the
    answer query (default 0.1); ``confidence`` the joint confidence of all bounds used and,
    separately, of all verified configurations (default 0.95); ``thresholds``: every ``t``
    captured and reported (must contain ``proximal_t``).

    Verification: ``verify`` (default on); ``tolerance`` the largest allowed answer-change
    rate ``tau`` (default 0.05); ``calibration_fraction`` of the images held out for it
    (default 0.6, chosen by ``benchmarks/study_verification.py``); ``split_seed`` of the split; ``max_new_tokens`` > 1 compares greedy
    generations of that many tokens (free-form data) instead of one-token answers;
    ``freeze_order`` and ``order_examples`` order the freeze chain (:data:`FREEZE_ORDERS`).

    Run: ``batch_size``, ``max_batch_tokens`` (:class:`RunSettings`), ``checkpoint_every``
    batches between checkpoints, ``resume`` from a checkpoint.
    """

    thresholds: tuple = setting(DEFAULT_THRESHOLDS, "proximal thresholds t captured for p_l(t)", _thresholds_check(),
                                metavar="T")
    confidence: float = setting(0.95, "joint confidence of all bounds used by the verdicts, and of all verified "
                                      "configurations", interval(0, 1), metavar="C")
    eps: float = setting(0.05, "redundancy level: U_l < eps and P_l(t) > 1 - eps", interval(0, 1))
    proximal_t: float = setting(0.05, "the t of the proximal test, one of --thresholds",
                                interval(0, COSINE_DISTANCE_RANGE), metavar="T")
    attention_threshold: float = setting(0.1, "largest allowed visual attention share (mean over heads) of the "
                                              "answer query", interval(0, 1, closed="high"), metavar="TAU")
    verify: bool = setting(True, "verify candidates by their answer-change rate (--no-verify: every example goes "
                                 "to the statistics and only the paper's verdicts are given)", BOOLEAN,
                           group="verification")
    tolerance: float = setting(0.05, "largest allowed fraction of changed answers", interval(0, 1), metavar="TAU",
                               group="verification")
    calibration_fraction: float = setting(0.6, "fraction of the images held out for verification",
                                          interval(0, 1), metavar="F", group="verification")
    split_seed: int = setting(0, "seed of the statistics/calibration split", ANY_INT, metavar="S",
                              group="verification")
    freeze_order: str = setting(
        "contribution", "order of the freeze chain: the certified vision redundancy U_l (the paper's statistic) or "
                        "ShortV's layer contribution (output KL when the layer's vision update is removed, on "
                        "--order-samples statistics examples); either is computed on the statistics split only "
                        "(contribution predicts harm far better on the demo model; see README)",
        one_of(FREEZE_ORDERS), group="verification")
    order_examples: int = setting(64, "statistics examples used by --freeze-order contribution", at_least(1),
                                  flag="--order-samples", metavar="K", group="verification")
    learn_margin: float = setting(1.0, "learn step: a candidate is tested on the calibration split only if its "
                                       "change rate on the statistics split is at most this fraction of --tolerance",
                                  interval(0, 1, closed="high"), metavar="M", group="verification")
    learn_examples: int = setting(0, "learn step: questions of the statistics split, drawn by image, on which every "
                                       "candidate's change rate is measured (0: all of them)", at_least(0),
                                  flag="--learn-samples", metavar="N", group="verification")
    fastv_ratios: tuple = setting(FASTV_RATIOS, "FastV keep ratios R among the verified candidates (FastV at every "
                                                "layer K with each R)", _ratios_check(), metavar="R",
                                  group="verification")
    max_new_tokens: int = setting(1, "greedy tokens of a free-form answer compared by the verification (1: the "
                                     "one-token answer)", at_least(1), cli=False)
    checkpoint_every: int = setting(8, "save the statistics every K batches", at_least(1), metavar="K")
    resume: bool = setting(True, "resume from the checkpoint in --out when there is one", BOOLEAN)

    def _check_together(self):
        object.__setattr__(self, "thresholds", tuple(sorted({float(t) for t in self.thresholds})))
        if float(self.proximal_t) not in self.thresholds:
            raise SettingError(f"{{proximal_t}} must be one of the captured {{thresholds}} {list(self.thresholds)}, "
                               f"got {self.proximal_t}")

    def chain_level(self) -> float:
        """Error level of each of the three verification chains: ``(1 - confidence) / 3``."""
        return (1.0 - self.confidence) / len(VERIFY_MODES)

    def decision_dict(self) -> dict[str, Any]:
        """The settings that change the verdicts (recorded in the certificate)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k in _DECISION for v in [getattr(self, k)]}


def _modes_check():
    return Check("non-empty, among " + ", ".join(EVALUATE_MODES), lambda v: isinstance(v, tuple) and len(v) > 0
                 and all(m in EVALUATE_MODES for m in v), EVALUATE_MODES)


_GRID = re.compile(r"all|\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*")


def parse_layer_grid(text: str | Iterable[int] | None, num_layers: int) -> list[int]:
    """Layers from a grid string: ``all`` (or None), ``1,2,8``, ``2-12``, ``2-12:2`` or a mix
    (``1,4-6``); a sequence of layers is taken as it is.

    Returns the sorted distinct layers; each must lie in [1, num_layers] (else
    :class:`SettingError` naming ``layers``)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return list(range(1, num_layers + 1))
    layers: set[int] = set()
    if not isinstance(text, str):
        layers.update(int(l) for l in text)
    else:
        for part in text.replace(" ", "").split(","):
            m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
            if not m:
                raise SettingError("{layers} must look like 'all', '1,2,8', '2-12' or '2-12:2', got {got}",
                                   {"got": repr(text)})
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) else lo
            step = int(m.group(3)) if m.group(3) else 1
            if step < 1 or hi < lo:
                raise SettingError("{layers} range {got} must have lo <= hi and step >= 1", {"got": repr(part)})
            layers.update(range(lo, hi + 1, step))
    bad = sorted(l for l in layers if not 1 <= l <= num_layers)
    if bad:
        raise SettingError(f"{{layers}} must lie in [1, {num_layers}], got {bad}")
    return sorted(layers)


def _grid_ok(value):
    if isinstance(value, str):
        return _GRID.fullmatch(value.replace(" ", "").lower()) is not None
    return isinstance(value, tuple) and len(value) > 0 and all(_is_int(l) and l >= 1 for l in value)


_DECISION = ("eps", "proximal_t", "attention_threshold", "confidence", "thresholds", "verify", "tolerance",
             "calibration_fraction", "split_seed", "max_new_tokens", "freeze_order", "order_examples", "learn_margin",
             "learn_examples", "fastv_ratios")


@dataclass(frozen=True)
class EvaluateSettings(RunSettings):
    """What ``skipit evaluate`` measures: ``modes`` at every layer of ``layers`` (a grid:
    ``all``, ``1,2,8``, ``2-12:2``; checked against the model by
    :func:`skipit.empirical.evaluate.parse_layer_grid`); ``tolerance`` the accuracy drop (a
    fraction; the command line takes points) still counted as kept; Theorem 6 on
    ``theorem6_examples`` examples with ``theorem6_iters`` power iterations; ``baselines``
    FastV at ``fastv_layer`` and VTW at ``vtw_kl``."""

    batch_size: int = setting(32, "examples per forward", at_least(1), metavar="B")
    modes: tuple = setting(SKIP_MODES, "skipping modes (freeze at L freezes layer L alone; "
                                                 "late-entry-oracle: vision enters with the full pass's "
                                                 "layer-(L-1) state, an analysis reference)", _modes_check(),
                           metavar="MODE")
    layers: str | tuple = setting("all", "layers L to try: all, 1,2,8, 2-12 or 2-12:2",
                                  Check("like 'all', '1,2,8', '2-12' or '2-12:2' (or be a sequence of layers >= 1)",
                                        _grid_ok, verb="look"), metavar="GRID")
    tolerance: float = setting(0.01, "accuracy drop (in points) still counted as kept", interval(0, 1, closed="both"),
                               metavar="POINTS", scale=100.0)
    theorem6_examples: int = setting(4, "examples for Theorem 6's bound vs the measured error (0 = skip)",
                                     at_least(0), flag="--theorem6-samples", metavar="K")
    theorem6_iters: int = setting(8, "power iterations per Lipschitz constant", at_least(1), metavar="I")
    baselines: bool = setting(False, "also FastV at matched FLOPs and visual token withdrawal by the KL rule",
                              BOOLEAN)
    fastv_layer: int = setting(2, "FastV's pruning layer", at_least(1), metavar="K")
    vtw_kl: float = setting(0.01, "VTW's output-KL threshold", NON_NEGATIVE_REAL, metavar="KL")

    def layer_list(self, num_layers: int) -> list[int]:
        """``layers`` for a model of ``num_layers`` decoder layers (:func:`parse_layer_grid`)."""
        return parse_layer_grid(self.layers, num_layers)


@dataclass(frozen=True)
class SkipSettings(RunSettings):
    """What ``skipit skip`` runs: ``mode`` at ``layer`` (late entry, early exit) or ``layers``
    (freeze, a grid string), the late-entry ``variant``, timed ``repeats`` times (median kept)."""

    batch_size: int = setting(32, "examples per forward", at_least(1), metavar="B")
    mode: str = setting("late-entry", "the skipping mode", one_of(SKIP_MODES), required=True)
    layer: int | None = setting(None, "late-entry / early-exit: layer L (1..N)", optional(at_least(1)), metavar="L")
    layers: str | None = setting(None, "freeze: the layers, e.g. 6,8,10 or 17-32 or 2-32:2 (1..N)",
                                 optional(TEXT), metavar="LIST")
    variant: str = setting("embedding", "late entry only: vision tokens enter with their embedding or with the "
                                        "layer-(L-1) state of a full pass (oracle; costs a full pass)",
                           one_of(("embedding", "oracle")))
    repeats: int = setting(3, "timing repeats, median kept", at_least(1), metavar="R")

    def _check_together(self):
        if self.variant != "embedding" and self.mode != "late-entry":
            raise SettingError(f"{{variant}} applies to {{mode}} late-entry only; got {{variant}} {self.variant} "
                               f"with {{mode}} {self.mode}")

    def target(self, num_layers: int | None) -> int | list[int] | None:
        """The layer argument of ``mode`` for a model of ``num_layers`` layers: ``layer`` (late
        entry, early exit; in [1, num_layers]) or the parsed ``layers`` (freeze). With
        ``num_layers`` None, only whether ``mode`` got the argument it takes is checked (None)."""
        from skipit.empirical.modes import get_mode

        if get_mode(self.mode).takes == "layers":
            if self.layers is None or self.layer is not None:
                raise SettingError(f"{{mode}} {self.mode} takes {{layers}} (e.g. 6,8,10), not {{layer}}; "
                                   f"got {{layer}} {self.layer} {{layers}} {{given}}", {"given": str(self.layers)})
            return None if num_layers is None else parse_layer_grid(self.layers, num_layers)
        if self.layer is None or self.layers is not None:
            raise SettingError(f"{{mode}} {self.mode} takes {{layer}}, not {{layers}}; "
                               f"got {{layer}} {self.layer} {{layers}} {{given}}", {"given": str(self.layers)})
        if num_layers is None:
            return None
        if not 1 <= self.layer <= num_layers:
            raise SettingError(f"{{layer}} must be in [1, {num_layers}] for this model, got {self.layer}")
        return self.layer


# --------------------------------------------------------------------------------------
# the command line: options from fields, fields from options, parameters as flags
# --------------------------------------------------------------------------------------

SETTINGS_CLASSES = (CertifySettings, EvaluateSettings, SkipSettings)
OTHER_FLAGS = {"checkpoint_dir": "--out directory", "out_dir": "--out", "examples": "--data",
               "num_examples": "--samples", "certificate": "--certificate", "model": "--model", "dtype": "--dtype",
               "device": "--device", "device_map": "--device-map", "max_memory": "--max-memory",
               "path_or_name": "--data", "split": "--split", "subset": "--subset", "task": "--task",
               "prompt_style": "--prompt-style", "answer": "--answer", "metric": "--metric",
               "max_new_tokens": "--max-new-tokens", "skip_bad": "--skip-bad", "mcq_template": "--mcq-template",
               "columns": "--*-column", "columns.image": "--image-column", "columns.question": "--question-column",
               "columns.answer": "--answer-column", "columns.choices": "--choices-column"}
"""Flags of the library parameters that are not settings fields (the command line passes them)."""


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _dest(f: dataclasses.Field) -> str:
    return _flag(f)[2:].replace("-", "_")


def flag_of(parameter: str, switch: bool | None = None) -> str:
    """The command-line flag of a library parameter (``batch_size`` -> ``--batch-size``,
    ``order_examples`` -> ``--order-samples``; with ``switch=False``, a switch's ``--no-...``).
    The one map from parameter names to flags: :meth:`SettingError.render` uses it."""
    for cls in SETTINGS_CLASSES:
        for f in dataclasses.fields(cls):
            if f.name == parameter and f.metadata.get("cli", True):
                flag = _flag(f)
                return "--no-" + flag[2:] if switch is False else flag
    return OTHER_FLAGS.get(parameter, "`" + parameter + "`")


def _default_text(f, default):
    if isinstance(default, tuple):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def add_setting_options(parser: Any, cls: type, *, only: Iterable[str] | None = None, skip: Iterable[str] = (),
                        groups: Mapping[str, str] | None = None) -> None:
    """Add one option per command-line field of the settings class ``cls`` to ``parser`` (a
    parser or an argument group): its flag, default, type, choices and help come from the field
    (:func:`setting`). ``only``: just these fields; ``skip``: fields added elsewhere (the shared
    ones of :func:`skipit.commands._common.model_options`). ``groups``: ``{group name: heading}``
    of argument groups."""
    made: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True) or f.name in skip or (only is not None and f.name not in only):
            continue
        target = parser
        if meta.get("group") and groups and meta["group"] in groups:
            if meta["group"] not in made:
                made[meta["group"]] = parser.add_argument_group(groups[meta["group"]])
            target = made[meta["group"]]
        default, scale = f.default, meta.get("scale")
        shown = default * scale if scale and default is not None else default
        if default is None:
            help_text = meta["help"]
        else:
            help_text = f"{meta['help']} (default: {_default_text(f, shown)})"
        kwargs: dict[str, Any] = {"dest": _dest(f), "default": shown, "help": help_text}
        if meta.get("required"):
            kwargs = {"dest": _dest(f), "required": True, "help": meta["help"]}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        check = meta["check"]
        if isinstance(default, bool):
            kwargs.pop("metavar", None)
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif isinstance(default, tuple):
            kwargs["nargs"] = "+"
            kwargs["default"] = list(default)
            if check.choices:
                kwargs["choices"] = check.choices
                kwargs["help"] += " (" + ", ".join(check.choices) + ")"
            elif default and isinstance(default[0], float):
                kwargs["type"] = float
        else:
            if check.choices:
                kwargs["choices"] = check.choices
            elif isinstance(default, float) or scale:
                kwargs["type"] = float
            elif isinstance(default, int) or f.type in ("int | None", "int"):
                kwargs["type"] = int
        target.add_argument(_flag(f), **kwargs)


def settings_from_args(cls: type, args: argparse.Namespace, **extra: Any):
    """The settings of ``cls`` from a namespace parsed with :func:`add_setting_options` (values
    given in a scaled unit are divided back), plus ``extra`` fields. A value out of range
    raises :class:`SettingError` naming the parameter; the command line prints it with its
    flag (:func:`flag_of`)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in extra or not f.metadata.get("cli", True) or not hasattr(args, _dest(f)):
            continue
        value = getattr(args, _dest(f))
        scale = f.metadata.get("scale")
        if scale and value is not None:
            if not (isinstance(value, (int, float)) and 0 <= value / scale <= 1):
                raise SettingError(f"{{{f.name}}} must be in [0, {scale:g}] ({f.metadata['metavar'].lower()}), "
                                   f"got {value:g}")
            value = value / scale
        if isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values, **extra)
