"""Measured per-layer statistics + the paper's theory -> a certificate of skippable layers.

Two halves:

* :func:`build_certificate` / :func:`decide` are pure (numpy + scipy): they turn the
  per-layer dicts of :meth:`skipit.empirical.RunStatistics.layers` into confidence
  bounds and the late-entry / early-exit verdicts of the paper's Section 4.
* :func:`certify` runs a model over examples under
  :func:`skipit.empirical.capture_statistics`, checkpoints the statistics so a run can
  be interrupted and resumed, and returns the certificate (``skipit.certificate/1``).

The decision rule (documented in the README, section "skipit certify"). With ``N`` decoder layers,
``eps`` (redundancy level), ``t`` (proximal threshold, one of the captured
thresholds), ``tau`` (attention threshold) and confidence ``c``; every bound is taken
at level ``delta = (1 - c) / (3 N)`` (Bonferroni over the ``3 N`` tests below, so all
of them hold together with probability ``>= c``):

* geometric test of layer ``l``: ``U_l < eps``, ``U_l`` the upper confidence bound
  (min of Hoeffding and empirical Bernstein) on the mean vision cosine distance ``E[rho(X_l, X_{l-1})]`` (rho in [0, 2]);
* proximal test of layer ``l``: ``P_l > 1 - eps``, ``P_l`` the Clopper-Pearson lower
  bound on ``P[rho(X_l, X_{l-1}) < t]`` for vision tokens;
* attention test of layer ``l``: ``A_l < tau``, ``A_l`` the upper confidence bound (min of
  Hoeffding and empirical Bernstein, examples as draws in [0, 1]) on the mean head-averaged share of the answer query's attention that falls on vision tokens.

Late entry at ``L`` (vision tokens inserted at the input of layer ``L``, skipping layers
``1..L-1``) is certified iff every layer ``l < L`` passes all three tests (Theorem 6's
hypotheses: small vision change, small vision-to-text effect). Early exit at ``L``
(vision tokens dropped after layer ``L``, i.e. from layers ``L+1..N``) is certified iff
every layer ``l > L`` passes the attention test (Section 4: the output is text, so
vision that is not attended to can leave).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats as _scipy_stats

from skipit.empirical.data import data_sha256
from skipit.empirical.files import atomic_write_text

SCHEMA = "skipit.certificate/1"
COSINE_DISTANCE_RANGE = 2.0  # rho(x, y) = 1 - cos(x, y) lies in [0, 2]
CHECKPOINT_STATE = "checkpoint.json"
CERTIFICATE = "certificate.json"


# --------------------------------------------------------------------------------------
# confidence bounds (private until skipit.theory.redundancy exports its versions)
# --------------------------------------------------------------------------------------

def _mean_upper(mean, variance, n, delta, value_range=COSINE_DISTANCE_RANGE):
    """Upper confidence bound on a mean from its sufficient statistics (``n``, mean, unbiased variance).

    Hypotheses: ``n`` i.i.d. draws in ``[0, value_range]``. Conclusion: with probability
    ``>= 1 - delta``, ``E[X] <=`` the smaller of Hoeffding
    ``mean + R sqrt(ln(2/delta) / (2n))`` and the empirical Bernstein bound of Maurer &
    Pontil (2009, Thm 4) ``mean + sqrt(2 V ln(4/delta) / n) + 7 R ln(4/delta) / (3(n-1))``,
    each at level ``delta/2`` (union bound), capped at ``R = value_range``: the same bound
    as ``skipit.theory.geometric_redundancy(d, 1 - delta, method="best")`` computed from
    the samples ``d`` (a streaming run keeps only their sums). ``n < 2``: ``R``.
    """
    if n < 2:
        return float(value_range)
    half = delta / 2.0
    hoeffding = mean + value_range * math.sqrt(math.log(1.0 / half) / (2.0 * n))
    log_term = math.log(2.0 / half)
    bernstein = mean + math.sqrt(2.0 * max(variance, 0.0) * log_term / n) \
        + 7.0 * value_range * log_term / (3.0 * (n - 1))
    return float(min(hoeffding, bernstein, value_range))


def _clopper_pearson_lower(k, n, delta):
    """One-sided Clopper-Pearson lower confidence bound on a binomial probability.

    ``k`` successes in ``n`` i.i.d. trials: with probability ``>= 1 - delta`` the true
    probability is ``>= Beta^{-1}(delta; k, n - k + 1)`` (0 when ``k = 0``).
    """
    if n <= 0 or k <= 0:
        return 0.0
    return float(_scipy_stats.beta.ppf(delta, k, n - k + 1))


def _hoeffding_upper(mean, n, delta, value_range=1.0):
    """Hoeffding upper confidence bound on a mean of ``n`` i.i.d. draws in ``[0, value_range]``:
    ``mean + value_range sqrt(ln(1/delta) / (2 n))``, capped at ``value_range``."""
    if n <= 0:
        return float(value_range)
    return float(min(mean + value_range * math.sqrt(math.log(1.0 / delta) / (2.0 * n)), value_range))


def _sample_variance(block):
    """Unbiased variance of a token block: the capture engine's (from its centred moment) when
    given, else from the sums."""
    if block.get("variance") is not None:
        return float(block["variance"])
    n = int(block["tokens"])
    if n < 2:
        return 0.0
    s, q = float(block["sum"]), float(block["sum_sq"])
    return max((q - s * s / n) / (n - 1), 0.0)


def _attention_upper(layer, num_examples, delta):
    """Upper confidence bound on the mean head-averaged visual attention share (values in [0, 1]).

    Per example the share is ``VAR / H`` (eq. 3 divided by the number of heads); with the
    capture engine's variance of VAR the bound is the "best" one of :func:`_mean_upper` on
    ``[0, 1]``, without it Hoeffding. A layer without attention statistics gets 1 (fails).
    """
    mean = layer.get("visual_attention_mean_head")
    if mean is None:
        return 1.0
    n = int(layer.get("visual_attention_examples") or num_examples)
    variance = layer.get("visual_attention_ratio_variance")
    heads = len(layer.get("visual_attention_per_head") or []) or None
    if variance is None or heads is None:
        return _hoeffding_upper(float(mean), n, delta)
    return _mean_upper(float(mean), float(variance) / heads ** 2, n, delta, value_range=1.0)


# --------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------

DEFAULT_THRESHOLDS = (0.01, 0.02, 0.05, 0.1)


@dataclass(frozen=True)
class DecisionSettings:
    """The decision rule's settings, with their defaults.

    ``eps``: redundancy level of Definitions 1-2 (geometric: ``E[rho] < eps``; proximal:
    ``P[rho < t] > 1 - eps``), default 0.05. ``proximal_t``: the ``t`` of Definition 2,
    default 0.05 (the paper's Figure 4). ``attention_threshold``: the largest allowed
    head-averaged visual attention share of the answer query, default 0.1.
    ``confidence``: joint confidence of all bounds used, default 0.95.
    ``thresholds``: every ``t`` captured and reported (must contain ``proximal_t``).
    """

    eps: float = 0.05
    proximal_t: float = 0.05
    attention_threshold: float = 0.1
    confidence: float = 0.95
    thresholds: tuple = DEFAULT_THRESHOLDS

    def __post_init__(self):
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"`eps` must be in (0, 1), got {self.eps}")
        if not 0.0 < self.proximal_t < COSINE_DISTANCE_RANGE:
            raise ValueError(f"`proximal_t` must be in (0, 2), got {self.proximal_t}")
        if not 0.0 < self.attention_threshold <= 1.0:
            raise ValueError(f"`attention_threshold` must be in (0, 1], got {self.attention_threshold}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"`confidence` must be in (0, 1), got {self.confidence}")
        thresholds = tuple(float(t) for t in self.thresholds)
        if not thresholds or any(not 0.0 < t < COSINE_DISTANCE_RANGE for t in thresholds):
            raise ValueError(f"`thresholds` must be non-empty values in (0, 2), got {list(self.thresholds)}")
        object.__setattr__(self, "thresholds", tuple(sorted(set(thresholds))))
        if _key(self.proximal_t) not in {_key(t) for t in self.thresholds}:
            raise ValueError(
                f"`proximal_t` must be one of the captured `thresholds` {list(self.thresholds)}, "
                f"got {self.proximal_t}")

    def delta(self, num_layers):
        """Per-test error level: Bonferroni over 3 tests (geometric, proximal, attention) per layer."""
        return (1.0 - self.confidence) / (3 * num_layers)


def _key(t):
    """The string key of a threshold in the statistics dicts (``0.05 -> "0.05"``)."""
    return repr(float(t))


def _lookup(mapping, t):
    key = _key(t)
    if key in mapping:
        return mapping[key]
    for k, v in mapping.items():
        if math.isclose(float(k), float(t), rel_tol=0, abs_tol=1e-12):
            return v
    raise KeyError(f"threshold {t} not in the captured statistics (have {sorted(mapping)})")


# --------------------------------------------------------------------------------------
# certificate layers + decision rule (pure)
# --------------------------------------------------------------------------------------

def _token_block(block, delta, thresholds):
    n = int(block["tokens"])
    mean = float(block["mean_cosine_distance"]) if n else None
    var = _sample_variance(block)
    probs = {_key(t): (float(_lookup(block["proximal_probability"], t)) if n else 0.0) for t in thresholds}
    counts = {_key(t): int(_lookup(block["proximal_count"], t)) for t in thresholds}
    return {
        "tokens": n,
        "mean_cosine_distance": mean,
        "mean_upper_bound": _mean_upper(mean, var, n, delta) if n else COSINE_DISTANCE_RANGE,
        "variance": var,
        "proximal_probability": probs,
        "proximal_count": counts,
        "proximal_lower_bound": {k: _clopper_pearson_lower(counts[k], n, delta) for k in counts},
    }


def certificate_layers(stats_layers, num_examples, settings):
    """Per-layer certificate entries from ``RunStatistics.layers()`` (l = 1..N).

    Point estimates are copied unchanged from the capture engine; each gets its
    one-sided confidence bound at level ``settings.delta(N)``.
    """
    num_layers = len(stats_layers)
    delta = settings.delta(num_layers)
    out = []
    for expected, layer in enumerate(stats_layers, start=1):
        if int(layer["layer"]) != expected:
            raise ValueError(f"statistics layers must be numbered 1..N in order, got layer {layer['layer']} "
                             f"at position {expected}")
        attention = layer.get("visual_attention_mean_head")
        entry = {
            "layer": expected,
            "vision": _token_block(layer["vision"], delta, settings.thresholds),
            "text": _token_block(layer["text"], delta, settings.thresholds),
        }
        if "answer" in layer:
            entry["answer"] = _token_block(layer["answer"], delta, settings.thresholds)
        ratio = layer.get("visual_attention_ratio")
        entry.update({
            "visual_attention_ratio": None if ratio is None else float(ratio),
            "visual_attention_mean_head": None if attention is None else float(attention),
            "visual_attention_upper_bound": _attention_upper(layer, num_examples, delta),
            "cka": {k: (None if v is None else float(v)) for k, v in layer.get("cka", {}).items()},
        })
        out.append(entry)
    return out


def _layer_tests(entry, settings, hidden_size=None):
    from skipit.theory import proposition1_mean_bound, theorem1_bound, theorem1_bound_sharp, theorem3_mi_lower_bound

    t_key = _key(settings.proximal_t)
    vision = entry["vision"]
    upper = vision["mean_upper_bound"]
    lower = vision["proximal_lower_bound"][t_key]
    attention = entry["visual_attention_upper_bound"]
    # Theorem 1 with its eps = 2 U (hypothesis E[rho] <= eps/2): coefficients of (alpha^2 + beta^2), (alpha + beta)^2
    functional = float(theorem1_bound(1.0, 0.0, 2.0 * upper)) if upper > 0 else 0.0
    functional_sharp = float(theorem1_bound_sharp(1.0, 0.0, 2.0 * upper)) if upper > 0 else 0.0
    # Proposition 1 (range [0, 2]): E[rho] <= t + (2 - t) P[rho > t] <= t + (2 - t)(1 - P_l)
    prop1 = float(proposition1_mean_bound(settings.proximal_t, 1.0 - lower, COSINE_DISTANCE_RANGE))
    informational = ""
    mi = None
    if hidden_size:
        # Theorem 3 decreases in P_t, so P_t <= 1 - P_l gives a valid lower bound
        mi = float(theorem3_mi_lower_bound(1.0 - lower, settings.proximal_t, int(hidden_size)))
        informational = (f"; Theorem 3 (only if X_l were uniform on S^{int(hidden_size) - 1}, not checked): "
                         f"I(X_l; X_(l-1)) >= {mi:.4g} nats")
    return {
        "geometric": {
            "pass": bool(upper < settings.eps), "mean_cosine_distance": vision["mean_cosine_distance"],
            "upper_bound": upper, "eps": settings.eps,
            "cites": f"Definition 1 (E[rho] <= {upper:.4g}); Theorem 1 with eps = 2U: "
                     f"E||E[Z|X_l] - E[Z|X_(l-1)]||^2 <= {functional:.4g} (alpha^2 + beta^2), sharp form "
                     f"{functional_sharp:.4g} (alpha + beta)^2",
            "theorem1_coefficient": functional,
        },
        "proximal": {
            "pass": bool(lower > 1.0 - settings.eps), "probability": vision["proximal_probability"][t_key],
            "lower_bound": lower, "t": settings.proximal_t, "required": 1.0 - settings.eps,
            "cites": f"Definition 2 (P[rho < {settings.proximal_t:g}] >= {lower:.4g}); Proposition 1 on [0, 2]: "
                     f"E[rho] <= {prop1:.4g}; Theorem 4 / Corollary 4: proximal implies informational "
                     "redundancy" + informational,
            "proposition1_mean_bound": prop1,
            "theorem3_mi_lower_bound_nats": mi,
        },
        "attention": {
            "pass": bool(attention < settings.attention_threshold),
            "visual_attention_mean_head": entry["visual_attention_mean_head"],
            "upper_bound": attention, "threshold": settings.attention_threshold,
            "cites": "Theorem 6 hypothesis ||f_text(V, T) - f_text(0, T)|| <= delta: vision barely moves the "
                     "text when the text barely attends to it",
        },
    }


def decide(layers, settings, hidden_size=None):
    """The late-entry and early-exit verdicts from certificate layers (see module docstring).

    ``hidden_size`` (the decoder's width d), when given, adds Theorem 3's mutual-information
    lower bound to each proximal test, under that theorem's hypothesis (X_l uniform on the
    sphere) which the certificate does not check. Returns ``(late_entry, early_exit)``. ``late_entry["max_entry_layer"]`` is the largest
    ``L`` in ``1..N`` such that every layer ``l < L`` passes the geometric, proximal and
    attention tests (``L = 1``: nothing skipped); ``certified_layers`` are the layers
    ``1..L-1`` the vision tokens may skip. ``early_exit["min_exit_layer"]`` is the smallest
    ``L`` in ``1..N`` such that every layer ``l > L`` passes the attention test
    (``L = N``: nothing skipped; vision always enters layer 1); ``certified_layers``
    are ``L+1..N``.
    """
    num_layers = len(layers)
    tests = {e["layer"]: _layer_tests(e, settings, hidden_size) for e in layers}

    late_ok = {l: all(x["pass"] for x in tests[l].values()) for l in tests}
    max_entry = 1
    while max_entry <= num_layers and late_ok[max_entry]:
        max_entry += 1
    max_entry = min(max_entry, num_layers)  # entering after the last layer is no model at all
    late_failure = next((l for l in range(1, num_layers + 1) if not late_ok[l]), None)
    late_certified = list(range(1, max_entry))
    steps = [tests[l]["geometric"]["upper_bound"] for l in late_certified]
    late_entry = {
        "certified_layers": late_certified,
        "max_entry_layer": max_entry,
        "reasons": {
            "rule": "late entry at L iff every layer l < L has U_l < eps (geometric), P_l > 1 - eps "
                    "(proximal, t = proximal_t) and A_l < attention_threshold, all at the settings' "
                    "joint confidence",
            "theorem": "Theorem 6 (App. A.2): ||Y_true - Y_skip|| <= mu((L-1) eps_6 + delta_6 "
                       "(lambda^L - 1)/(lambda - 1)) under Lipschitz hypotheses (mu, lambda not measured)",
            "theorem6_eps_estimate": (math.sqrt(2 * max(steps)) if steps else 0.0),
            "theorem6_eps_note": "largest mean per-token step E||v_l - v_{l-1}|| <= sqrt(2 U_l) over the "
                                 "skipped layers (unit-normalised states, Jensen); Theorem 6 asks for a "
                                 "worst-case step, which a finite sample cannot certify",
            "first_failing_layer": late_failure,
            "failing_tests": ([k for k, v in tests[late_failure].items() if not v["pass"]]
                              if late_failure is not None else []),
            "layers": {str(l): tests[l] for l in range(1, num_layers + 1)},
        },
    }

    attention_ok = {l: tests[l]["attention"]["pass"] for l in tests}
    min_exit = num_layers
    while min_exit > 1 and attention_ok[min_exit]:
        min_exit -= 1
    exit_failure = min_exit if not attention_ok[min_exit] else None
    early_exit = {
        "certified_layers": list(range(min_exit + 1, num_layers + 1)),
        "min_exit_layer": min_exit,
        "reasons": {
            "rule": "early exit after L iff every layer l > L has A_l < attention_threshold "
                    "(upper confidence bound of the head-mean visual attention share)",
            "theorem": "Section 4 (Visual Attention Ratio, Jiang et al. 2025): the output is text, so "
                       "vision tokens the text does not attend to can leave; the paper states no error "
                       "bound for early exit",
            "last_failing_layer": exit_failure,
            "layers": {str(l): {"attention": tests[l]["attention"]} for l in range(1, num_layers + 1)},
        },
    }
    return late_entry, early_exit


def build_certificate(stats_layers, *, num_examples, settings, model_info, data_info, run_info=None):
    """The ``skipit.certificate/1`` dict from per-layer statistics (pure; no torch)."""
    layers = certificate_layers(stats_layers, num_examples, settings)
    late_entry, early_exit = decide(layers, settings, hidden_size=model_info.get("hidden_size"))
    num_layers = len(layers)
    settings_out = {
        "thresholds": list(settings.thresholds),
        "confidence": settings.confidence,
        "eps": settings.eps,
        "proximal_t": settings.proximal_t,
        "attention_threshold": settings.attention_threshold,
        "attention_statistic": "visual_attention_mean_head",
        "bonferroni_tests": 3 * num_layers,
        "delta_per_test": settings.delta(num_layers),
        "bounds": {
            "mean_upper_bound": "min(Hoeffding, empirical Bernstein (Maurer & Pontil 2009, Thm 4)) at "
                                "delta/2 each, tokens as i.i.d. draws in [0, 2]",
            "proximal_lower_bound": "one-sided Clopper-Pearson, tokens as i.i.d. trials",
            "visual_attention_upper_bound": "min(Hoeffding, empirical Bernstein) at delta/2 each on the "
                                            "head-mean share VAR/H, examples as i.i.d. draws in [0, 1]",
        },
    }
    settings_out.update(run_info or {})
    return {
        "schema": SCHEMA,
        "model": dict(model_info, num_layers=num_layers),
        "data": dict(data_info, num_examples=int(num_examples)),
        "settings": settings_out,
        "hypotheses": [
            "tokens (for D_l, p_l) and examples (for the attention share) are i.i.d. draws from the "
            "distribution the certificate speaks about; tokens of one example are in fact dependent, "
            "so the bounds are as strong as this hypothesis",
            "Theorem 1 additionally needs E[Z | X_l, X_{l-1}] Lipschitz; Theorem 6 needs the tail of the "
            "model mu-Lipschitz and each text update lambda-Lipschitz; neither constant is measured",
        ],
        "layers": layers,
        "late_entry": late_entry,
        "early_exit": early_exit,
    }


# --------------------------------------------------------------------------------------
# files: atomic writes, checkpoints
# --------------------------------------------------------------------------------------

def write_certificate(certificate, out_dir):
    """Write ``certificate.json`` atomically into ``out_dir``; returns its path."""
    path = os.path.join(os.fspath(out_dir), CERTIFICATE)
    atomic_write_text(path, json.dumps(certificate, indent=2, sort_keys=False) + "\n")
    return path


@dataclass
class _CheckpointState:
    data_sha256: str
    num_examples: int
    batch_size: int
    settings_key: str
    model_key: str = ""
    data_source: str = ""  # where the examples came from, for messages (e.g. "bundled:digits-test")
    statistics: str = ""  # file name (in the checkpoint directory) of the statistics of `done`
    done: list = field(default_factory=list)  # example indices already in the statistics

    def to_json(self):
        return json.dumps(asdict(self), indent=1)


# --------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------

def _to_model(value, device, dtype):
    """An input tensor on the model's device; floating ones (pixels) in the model's dtype."""
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    return value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)


def _weights_fingerprint(model, per_tensor=8):
    """A cheap fingerprint of the weights: shape and a few values of every parameter.

    A retrained model saved to the same place must not resume another model's checkpoint;
    hashing every byte of a 13B model would cost minutes, so a few values per tensor are
    hashed (any real retraining changes them).
    """
    import hashlib

    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().reshape(-1)
            picks = torch.cat([flat[:per_tensor], flat[-per_tensor:]]).to("cpu", torch.float64)
            digest.update(name.encode())
            digest.update(str(tuple(param.shape)).encode())
            digest.update(picks.numpy().tobytes())
    return digest.hexdigest()[:16]


_MODEL_FIELDS = {
    "model": ("location", ""),
    "model_type": ("model type", ""),
    "num_layers": ("number of decoder layers", ""),
    "dtype": ("dtype", " (--dtype or --device changed?)"),
}


def _resume_problem(saved, state):
    """Why the checkpoint state ``saved`` (a dict) cannot be continued by a run with
    ``state`` (a :class:`_CheckpointState`), in words; None if it can."""
    mine = state.data_source or "this run's data"
    theirs = saved.get("data_source") or "its data"
    n_saved, n = saved.get("num_examples"), state.num_examples
    finished = isinstance(n_saved, int) and len(saved.get("done") or ()) >= n_saved
    if n_saved != n:
        hint = " (--samples changed?)" if theirs == mine or not saved.get("data_source") else ""
        return f"covers {n_saved} examples of {theirs}; this run has {n} of {mine}{hint}"
    if saved.get("data_sha256") != state.data_sha256:
        done = "a finished run's statistics" if finished else f"statistics of {len(saved.get('done') or ())}"
        return (f"holds {done} on {n} examples of {theirs} whose content differs from this run's {n} "
                f"examples of {mine} (the data file, its images or --data changed?)")
    if saved.get("settings_key") != state.settings_key:
        old = _json_or_none(saved.get("settings_key")) or {}
        new = _json_or_none(state.settings_key) or {}
        return (f"captured the proximal thresholds {old.get('thresholds')}; this run asks for "
                f"{new.get('thresholds')} (--thresholds changed?)")
    if saved.get("model_key") != state.model_key:
        old = _json_or_none(saved.get("model_key")) or {}
        new = _json_or_none(state.model_key) or {}
        for key, (words, hint) in _MODEL_FIELDS.items():
            if old.get(key) != new.get(key):
                return (f"was made with another model: its {words} was {old.get(key)!r}, this run's is "
                        f"{new.get(key)!r}{hint}")
        return ("was made with other weights: same location, type, layers and dtype, but the "
                "parameters' values differ (a retrained or re-saved model?)")
    return None


def _json_or_none(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _batches(indices, batch_size):
    for i in range(0, len(indices), batch_size):
        yield indices[i:i + batch_size]


def certify(model, processor, examples, *, thresholds=DEFAULT_THRESHOLDS, confidence=0.95, eps=0.05,
            proximal_t=0.05, attention_threshold=0.1, batch_size=8, checkpoint_dir=None,
            checkpoint_every=4, resume=True, progress=True, model_info=None, data_info=None,
            run_info=None, max_batches=None):
    """Measure per-layer statistics of ``model`` on ``examples`` and certify skippable layers.

    ``examples``: a list of :class:`skipit.empirical.data.Example`. Statistics come from
    :func:`skipit.empirical.capture_statistics` (one forward per batch, answer position =
    last prompt token). With ``checkpoint_dir``, the merged statistics and the indices of
    the examples done are saved every ``checkpoint_every`` batches; a later call with the
    same directory and ``resume=True`` continues from there, with any batch size (the
    statistics are sums over examples; the checkpoint records which examples are done). A
    resume is refused, with :class:`skipit.errors.SkipitError` saying what changed, if the
    number of examples, their sha256, the captured thresholds or the model (location, type,
    layers, dtype, a fingerprint of the weights) differ.
    ``max_batches`` stops after that many new batches without a certificate (``None`` is
    returned): used to test resumption. ``model_info`` / ``data_info`` / ``run_info`` are
    copied into the certificate's model, data and settings blocks. Returns the
    certificate dict (not written: see :func:`write_certificate`).
    """
    import torch

    from skipit.empirical import RunStatistics, capture_statistics
    from skipit.empirical.adapters import get_adapter
    from skipit.empirical.data import build_inputs
    from skipit.errors import SkipitError

    settings = DecisionSettings(eps=eps, proximal_t=proximal_t, attention_threshold=attention_threshold,
                                confidence=confidence, thresholds=tuple(thresholds))
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    if not examples:
        raise SkipitError("no examples to certify on")
    adapter = get_adapter(model)
    sha = data_sha256(examples)
    settings_key = json.dumps({"thresholds": list(settings.thresholds)})
    model_key = json.dumps({"model": (model_info or {}).get("location") or (model_info or {}).get("name"),
                            "model_type": adapter.model_type, "num_layers": adapter.num_layers(model),
                            "dtype": str(next(model.parameters()).dtype),
                            "weights": _weights_fingerprint(model)})
    state = _CheckpointState(sha, len(examples), int(batch_size), settings_key, model_key,
                             data_source=str((data_info or {}).get("source") or ""))
    total = None
    if checkpoint_dir is not None:
        checkpoint_dir = os.fspath(checkpoint_dir)
        state_path = os.path.join(checkpoint_dir, CHECKPOINT_STATE)
        if resume and os.path.exists(state_path):
            with open(state_path, encoding="utf-8") as fh:
                saved = json.load(fh)
            problem = _resume_problem(saved, state)
            if problem:
                raise SkipitError(f"the checkpoint in {checkpoint_dir} {problem}; "
                                  "use another --out directory or --no-resume")
            state.done = list(saved["done"])
            state.statistics = saved["statistics"]
            total = RunStatistics.load(os.path.join(checkpoint_dir, state.statistics))

    done = set(state.done)
    todo = [i for i in range(len(examples)) if i not in done]
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(examples), initial=len(done), unit="ex", desc="certify", leave=True)

    def save_checkpoint():
        # A new statistics file per checkpoint, then the state naming it, written atomically: a crash
        # at any point leaves a state whose statistics file is complete and holds exactly `done`.
        if checkpoint_dir is None or total is None:
            return
        os.makedirs(checkpoint_dir, exist_ok=True)
        old = state.statistics
        state.statistics = f"statistics-{len(state.done):09d}.json"
        total.save(os.path.join(checkpoint_dir, state.statistics))
        atomic_write_text(os.path.join(checkpoint_dir, CHECKPOINT_STATE), state.to_json())
        if old and old != state.statistics and os.path.exists(os.path.join(checkpoint_dir, old)):
            os.unlink(os.path.join(checkpoint_dir, old))

    batches = list(_batches(todo, batch_size))
    try:
        for start in range(0, len(batches), checkpoint_every):
            chunk = batches[start:start + checkpoint_every]
            if max_batches is not None:
                chunk = chunk[:max(0, max_batches - start)]
                if not chunk:
                    return None
            with torch.inference_mode(), capture_statistics(model, adapter=adapter, thresholds=settings.thresholds,
                                                            cka=True, attention=True) as cap:
                for idx in chunk:
                    inputs = build_inputs(processor, [examples[i] for i in idx], model=model)
                    inputs = {k: _to_model(v, device, dtype) for k, v in inputs.items()}
                    model(**inputs)
                    if bar is not None:
                        bar.update(len(idx))
            part = cap.statistics
            total = part if total is None else total.merge(part)
            state.done.extend(i for idx in chunk for i in idx)
            save_checkpoint()
            if max_batches is not None and start + len(chunk) >= max_batches:
                return None
    finally:
        if bar is not None:
            bar.close()

    model_info = dict(model_info or {})
    model_info.setdefault("model_type", adapter.model_type)
    model_info.setdefault("hidden_size", getattr(adapter.text_config(model.config), "hidden_size", None))
    data_info = dict(data_info or {})
    data_info["sha256"] = sha
    run_info = dict(run_info or {}, batch_size=int(batch_size))
    return build_certificate(total.layers(), num_examples=total.num_examples, settings=settings,
                             model_info=model_info, data_info=data_info, run_info=run_info)
