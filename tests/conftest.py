"""Test-wide set-up: import mmllava first, so its dependency shims apply before anything else."""
import os

import mmllava  # noqa: F401

# Configs and resources are named relative to the repository, as users run the tools from it:
# run the tests from there too, wherever pytest was started.
os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Never reach a hub from tests: everything they need is built or shipped locally.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

# Property-based tests: the same generated cases on every run and machine (no example database,
# no deadline: CI's 2 shared cores time unevenly). Each test sets its own max_examples.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the fuzz tests import it themselves and say what is missing
    pass
else:
    settings.register_profile('mmllava', derandomize=True, database=None, deadline=None,
                              print_blob=False,
                              suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
    settings.load_profile('mmllava')
