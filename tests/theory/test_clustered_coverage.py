"""Examples, not tokens, are the independent units: coverage of the bounds on clustered data.

Each simulated example has a latent offset shared by all its tokens (an image that is
"easy" or "hard" for a layer), plus independent token noise, so tokens within an example
are strongly correlated (intra-example correlation 0.84) while examples are i.i.d.:

    u_e = 0.3 or 1.1 (probability 1/2 each),  rho_{e,j} = u_e + U(-0.3, 0.3),  rho in [0, 1.4].

Closed forms: ``E[rho] = 0.7``; ``P[rho < 0.5] = (1/2) P[U(-0.3, 0.3) < 0.2] = (1/2)(5/6) = 5/12``.

A bound computed with the examples as draws (``n`` = examples, on the per-example mean
and fraction) must cover at the stated confidence; the same bound fed the tokens as if
they were independent (``n`` = tokens) must not.
"""

import numpy as np
from scipy import stats

from skipit.theory import clopper_pearson_lower, mean_lower_bound, mean_upper_bound

REPEATS = 400
EXAMPLES = 30
TOKENS_PER_EXAMPLE = 200
CONFIDENCE = 0.95
DELTA = 1.0 - CONFIDENCE
THRESHOLD = 0.5
TRUE_MEAN = 0.7
TRUE_PROXIMAL = 5.0 / 12.0
#: coverage below this in REPEATS repetitions has probability < 0.001 if the true coverage is >= CONFIDENCE
MIN_COVERAGE = stats.binom.ppf(0.001, REPEATS, CONFIDENCE) / REPEATS
#: token-level bounds must cover clearly less than the stated confidence
TOKEN_COVERAGE_BELOW = 0.8


def _clustered_distances(seed=0):
    """Distances ``(REPEATS, EXAMPLES, TOKENS_PER_EXAMPLE)`` from the model in the module docstring."""
    rng = np.random.default_rng(seed)
    latent = np.where(rng.random((REPEATS, EXAMPLES, 1)) < 0.5, 0.3, 1.1)
    return latent + rng.uniform(-0.3, 0.3, size=(REPEATS, EXAMPLES, TOKENS_PER_EXAMPLE))


def test_example_level_mean_bound_covers_and_token_level_does_not():
    rho = _clustered_distances()
    per_example = rho.mean(-1)
    example_bound = mean_upper_bound(per_example.mean(-1), per_example.var(-1, ddof=1), EXAMPLES, DELTA, 2.0)
    tokens = rho.reshape(REPEATS, -1)
    token_bound = mean_upper_bound(tokens.mean(-1), tokens.var(-1, ddof=1), tokens.shape[-1], DELTA, 2.0)
    assert np.mean(TRUE_MEAN <= example_bound) >= MIN_COVERAGE
    assert np.mean(TRUE_MEAN <= token_bound) < TOKEN_COVERAGE_BELOW


def test_example_level_proximal_bound_covers_and_token_level_does_not():
    below = _clustered_distances(seed=1) < THRESHOLD
    fraction = below.mean(-1)
    example_bound = mean_lower_bound(fraction.mean(-1), fraction.var(-1, ddof=1), EXAMPLES, DELTA, 1.0)
    token_bound = clopper_pearson_lower(below.sum((1, 2)), EXAMPLES * TOKENS_PER_EXAMPLE, DELTA)
    assert np.mean(example_bound <= TRUE_PROXIMAL) >= MIN_COVERAGE
    assert np.mean(token_bound <= TRUE_PROXIMAL) < TOKEN_COVERAGE_BELOW
