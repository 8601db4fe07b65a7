"""One return-type rule for the numeric functions of ``skipit.theory``: a Python ``float`` when every
argument is a scalar (a Python number, a numpy scalar or a 0-d array), a float64 ``ndarray`` of the
broadcast shape as soon as one argument is an array. Functions of whole pmfs or samples return a float."""

import inspect

import numpy as np
import pytest

from skipit.theory import distances, entropy, functional, informational, late_entry, lemmas, redundancy, spherical

ELEMENTWISE = {  # name -> keyword arguments of one valid call
    "lemma1_bound": {"d_xz": 0.3, "d_zy": 0.4},
    "lemma1_bound_sharp": {"d_xz": 0.3, "d_zy": 0.4},
    "lemma2_mean_squared_distance": {"mean_rho": 0.05},
    "lemma3_bound": {"a_sq": 0.1, "b_sq": 0.2, "c_sq": 0.3},
    "lemma3_bound_sharp": {"a_sq": 0.1, "b_sq": 0.2, "c_sq": 0.3},
    "proposition1_tail_threshold": {"t": 0.05, "eps": 0.1},
    "proposition1_tail_threshold_bounded": {"t": 0.05, "eps": 0.1, "rho_max": 2.0},
    "proposition1_mean_bound": {"t": 0.05, "tail_prob": 0.02, "rho_max": 2.0},
    "theorem1_bound": {"alpha": 1.0, "beta": 0.5, "eps": 0.1},
    "theorem1_bound_sharp": {"alpha": 1.0, "beta": 0.5, "eps": 0.1},
    "theorem2_bound": {"alpha": 1.0, "beta": 0.5, "eps": 0.1, "eta_l": 0.01, "eta_prev": 0.02},
    "theorem2_bound_sharp": {"alpha": 1.0, "beta": 0.5, "eps": 0.1, "eta_l": 0.01, "eta_prev": 0.02},
    "geometric_sum": {"lam": 1.1, "L": 4},
    "theorem6_bound": {"mu": 1.0, "lam": 1.1, "eps": 0.05, "delta": 0.01, "L": 4, "entry": 1},
    "theorem6_bound_sqrt": {"mu": 1.0, "lam": 1.1, "eps": 0.05, "delta": 0.01, "L": 4, "entry": 1},
    "log_cap_fraction": {"t": 0.3, "d": 64},
    "cap_fraction": {"t": 0.3, "d": 64},
    "theorem3_mi_lower_bound": {"p_t": 0.1, "t": 0.3, "d": 64},
    "theorem3_mi_lower_bound_sharp": {"p_t": 0.1, "t": 0.3, "d": 64},
    "theorem4_mi_lower_bound": {"p_t": 0.1, "p_min": 0.01, "p_max": 0.05},
    "theorem4_mi_lower_bound_sharp": {"p_t": 0.1, "p_min": 0.01, "p_max": 0.05},
    "corollary4_conditional_entropy_upper_bound": {"h_x": 5.0, "p_t": 0.1, "p_min": 0.01, "p_max": 0.05},
    "theorem5_bound": {"B": 1.0, "cmi": 0.05},
    "theorem5_entropy_bound": {"B": 1.0, "h_cond": 0.05, "C": 0.1},
    "binary_entropy": {"q": 0.3},
    "binary_kl": {"p": 0.3, "q": 0.6},
    "mean_upper_bound": {"mean": 0.1, "variance": 0.01, "n": 50, "delta": 0.05},
    "mean_lower_bound": {"mean": 0.1, "variance": 0.01, "n": 50, "delta": 0.05},
    "clopper_pearson_lower": {"k": 3, "n": 50, "delta": 0.05},
    "clopper_pearson_upper": {"k": 3, "n": 50, "delta": 0.05},
}
_P3 = (np.full((2, 2, 2), 1 / 8)).tolist()
WHOLE = {  # functions of a whole pmf or sample: a float for every input
    "shannon_entropy": {"p": [0.5, 0.5]},
    "conditional_entropy": {"p": [[0.25, 0.25], [0.5, 0.0]], "x": 0, "y": 1},
    "mutual_information": {"p": [[0.25, 0.25], [0.5, 0.0]], "x": 0, "y": 1},
    "conditional_mutual_information": {"p": _P3, "x": 0, "y": 1, "z": 2},
    "kl_divergence": {"p": [0.5, 0.5], "q": [0.25, 0.75]},
    "plugin_entropy": {"x": [0, 1, 1, 2]},
    "plugin_conditional_entropy": {"x": [0, 1, 1, 2], "y": [0, 0, 1, 1]},
    "plugin_mutual_information": {"x": [0, 1, 1, 2], "y": [0, 0, 1, 1]},
    "plugin_conditional_mutual_information": {"x": [0, 1, 1, 2], "y": [0, 0, 1, 1], "z": [1, 0, 1, 0]},
    "lemma4_expected_kl": {"p": _P3},
    "lemma4_gap": {"p": _P3},
    "conditional_mean_gap": {"p": _P3, "z_values": [0.0, 1.0]},
}
OTHER = {  # neither: they return a structure, an array of vectors, or a boolean
    "validate_pmf", "exact_proximal_quantities", "informational_bounds_from_samples", "cosine_distance",
    "unit_normalize", "is_unit_norm", "geometric_redundancy", "proximal_probability", "functional_redundancy",
    "is_geometrically_redundant", "is_proximally_redundant", "is_functionally_redundant",
    "is_informationally_redundant",
}
MODULES = (lemmas, functional, late_entry, spherical, informational, entropy, redundancy, distances)


def _public_functions():
    return sorted(name for m in MODULES for name in m.__all__ if inspect.isfunction(getattr(m, name)))


def _function(name):
    return next(getattr(m, name) for m in MODULES if name in m.__all__)


def test_every_public_function_has_a_declared_return_rule():
    assert set(_public_functions()) == set(ELEMENTWISE) | set(WHOLE) | OTHER


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_scalar_inputs_give_a_python_float_and_arrays_give_an_array(name):
    f, kwargs = _function(name), ELEMENTWISE[name]
    assert type(f(**kwargs)) is float
    assert type(f(**{k: np.float64(v) for k, v in kwargs.items()})) is float
    assert type(f(**{k: np.asarray(v) for k, v in kwargs.items()})) is float  # 0-d arrays are scalars
    if all(isinstance(v, float) for v in kwargs.values()):
        assert type(f(**{k: np.float32(v) for k, v in kwargs.items()})) is float
    for key in kwargs:
        got = f(**dict(kwargs, **{key: np.array([kwargs[key]] * 2)}))
        assert type(got) is np.ndarray and got.shape == (2,) and got.dtype == np.float64, key
        assert got[0] == got[1] == f(**kwargs), key


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_functions_of_a_whole_pmf_or_sample_return_a_python_float(name):
    assert type(_function(name)(**WHOLE[name])) is float
