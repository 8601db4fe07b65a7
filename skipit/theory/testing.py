"""Hypothesis strategies for synthetic distributions whose true values are known exactly.

Needs ``hypothesis`` (the ``test`` extra). Functional-side strategies live in
``_testing_functional``, informational-side ones in ``_testing_informational``.
"""

from skipit.theory._testing_functional import *  # noqa: F401,F403
from skipit.theory._testing_informational import *  # noqa: F401,F403
