"""skipit.theory: every result of the paper as a numeric function and a sympy expression.

Pure maths (numpy, scipy, sympy; jax optional). Never imports torch or transformers
(``tests/theory/test_no_torch.py`` proves it in a subprocess).

Modules: ``distances`` (cosine distance), ``redundancy`` (Definitions 1-4 as estimators
with confidence bounds), ``confidence`` (betting confidence bounds on
bounded means from per-unit values), ``lemmas`` (Lemmas 1-4), ``functional`` (Proposition 1,
Theorems 1-2), ``late_entry`` (Theorem 6), ``spherical`` (cap measures on S^{d-1}),
``entropy`` (exact and plug-in entropies), ``informational`` (Theorems 3-5,
Corollary 4), ``pid`` (Appendix E: BROJA unique information, Lemma 5),
``symbolic`` (the sympy form of every bound), ``testing`` (Hypothesis strategies).
"""

from skipit.theory.distances import *  # noqa: F401,F403
from skipit.theory.redundancy import *  # noqa: F401,F403
from skipit.theory.confidence import *  # noqa: F401,F403
from skipit.theory.lemmas import *  # noqa: F401,F403
from skipit.theory.functional import *  # noqa: F401,F403
from skipit.theory.late_entry import *  # noqa: F401,F403
from skipit.theory.spherical import *  # noqa: F401,F403
from skipit.theory.entropy import *  # noqa: F401,F403
from skipit.theory.informational import *  # noqa: F401,F403
from skipit.theory.pid import *  # noqa: F401,F403
# Every submodule is reachable under its own name (`import skipit.theory.pid as m` gives the
# module): no module's __all__ reuses a submodule name (tests/theory/test_module_names.py).
# The PID and entropy functions of those names are exported as `pid_decomposition`,
# `pid_redundancy` and `shannon_entropy`.
from skipit.theory import (  # noqa: F401
    confidence,
    distances,
    entropy,
    functional,
    informational,
    late_entry,
    lemmas,
    pid,
    redundancy,
    spherical,
)
from skipit.theory._registry import REGISTRY  # noqa: F401
