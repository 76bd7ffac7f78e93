"""Test-wide set-up: import mmllava first, so its dependency shims apply before anything else."""
import os

import mmllava  # noqa: F401

# Never reach a hub from tests: everything they need is built or shipped locally.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
