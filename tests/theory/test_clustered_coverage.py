"""Images, not tokens or questions, are the independent units: coverage on clustered data.

Each simulated image has a latent offset shared by all its tokens (an image that is "easy"
or "hard" for a layer), plus independent token noise, so its tokens are strongly correlated;
and each image is asked ``QUESTIONS`` questions whose vision values are identical (the image
comes before the question, so a question cannot change them). Images are i.i.d.:

    u_e = 0.3 or 1.1 (probability 1/2 each),  rho_{e,j} = u_e + U(-0.3, 0.3),  rho in [0, 1.4].

Closed forms: ``E[rho] = 0.7``; ``P[rho < 0.5] = (1/2) P[U(-0.3, 0.3) < 0.2] = (1/2)(5/6) = 5/12``.

The certificate's bounds (:func:`skipit.theory.betting_upper_bound` / ``betting_lower_bound``)
fed one value per image (its mean distance, its fraction below ``t``) must cover at the stated
level; fed one value per question (each image counted ``QUESTIONS`` times) or per token they
must not. Coverage is judged by the Clopper-Pearson upper bound on it at level ``MC_ERROR``.
"""

import numpy as np

from skipit.theory import betting_lower_bound, betting_upper_bound, clopper_pearson_upper

REPEATS = 600
IMAGES = 30
QUESTIONS = 4
TOKENS_PER_IMAGE = 16
DELTA = 0.1
MC_ERROR = 1e-3
THRESHOLD = 0.5
TRUE_MEAN = 0.7
TRUE_PROXIMAL = 5.0 / 12.0
RANGE = 2.0


def _coverage_ok(covered):
    """Coverage not shown to be below ``1 - DELTA`` (Clopper-Pearson at ``MC_ERROR``)."""
    return clopper_pearson_upper(int(np.sum(covered)), covered.size, MC_ERROR) >= 1.0 - DELTA


def _clustered_distances(seed=0):
    """Token distances ``(REPEATS, IMAGES, TOKENS_PER_IMAGE)`` from the model in the module docstring."""
    rng = np.random.default_rng(seed)
    latent = np.where(rng.random((REPEATS, IMAGES, 1)) < 0.5, 0.3, 1.1)
    return latent + rng.uniform(-0.3, 0.3, size=(REPEATS, IMAGES, TOKENS_PER_IMAGE))


def test_image_level_mean_bound_covers_and_question_or_token_level_does_not():
    rho = _clustered_distances()
    per_image = rho.mean(-1)
    per_question = np.repeat(per_image, QUESTIONS, axis=-1)  # identical vision values per question
    assert _coverage_ok(TRUE_MEAN <= betting_upper_bound(per_image, DELTA, 0.0, RANGE))
    assert not _coverage_ok(TRUE_MEAN <= betting_upper_bound(per_question, DELTA, 0.0, RANGE))
    assert not _coverage_ok(TRUE_MEAN <= betting_upper_bound(rho.reshape(REPEATS, -1), DELTA, 0.0, RANGE))


def test_image_level_proximal_bound_covers_and_question_or_token_level_does_not():
    below = _clustered_distances(seed=1) < THRESHOLD
    fraction = below.mean(-1)
    per_question = np.repeat(fraction, QUESTIONS, axis=-1)
    assert _coverage_ok(betting_lower_bound(fraction, DELTA) <= TRUE_PROXIMAL)
    assert not _coverage_ok(betting_lower_bound(per_question, DELTA) <= TRUE_PROXIMAL)
    assert not _coverage_ok(betting_lower_bound(below.reshape(REPEATS, -1).astype(float), DELTA) <= TRUE_PROXIMAL)
