"""The code base stays ruff clean (the linter is pinned in requirements/tests.txt)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which('ruff', path=str(Path(sys.executable).parent)) or shutil.which('ruff')
    if ruff is None:
        pytest.fail('ruff is not installed: pip install -e ".[tests]"')
    proc = subprocess.run([ruff, 'check', str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
