"""Test-wide set-up: import mmllava first, so its dependency shims apply before anything else."""
import os

import mmllava  # noqa: F401

# Configs and resources are named relative to the repository, as users run the tools from it:
# run the tests from there too, wherever pytest was started.
os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Never reach a hub from tests: everything they need is built or shipped locally.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
