"""Evaluation: metrics registered in ``mmllava.registry.METRICS``, annotation readers."""
from .metrics import *  # noqa: F401,F403
from .metrics import __all__ as _metric_names

__all__ = list(_metric_names)
