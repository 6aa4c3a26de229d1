"""Tuning studies: a search space as data, KerasTuner's oracles choosing trials, and
every trial an ordinary run (see :mod:`cnnlab.tune.study`)."""

from cnnlab.tune.space import DEFAULT_SPACE, SPACES, TUNABLE, SearchSpace, load_space
from cnnlab.tune.study import (
    OBJECTIVES,
    TUNERS,
    Study,
    cancel_study,
    drive,
    list_studies,
    load_study,
    new_study,
    promote,
    resume_study,
    start_study,
)

__all__ = [
    "DEFAULT_SPACE",
    "OBJECTIVES",
    "SPACES",
    "TUNABLE",
    "TUNERS",
    "SearchSpace",
    "Study",
    "cancel_study",
    "drive",
    "list_studies",
    "load_space",
    "load_study",
    "new_study",
    "promote",
    "resume_study",
    "start_study",
]
