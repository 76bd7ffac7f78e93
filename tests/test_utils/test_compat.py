"""The mmpretrain shim: why it exists, and that it works."""
import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-W', 'ignore', '-c', code], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_mmpretrain_models_import_fails_without_shim():
    # The shim is needed only while mmpretrain 1.2.0 breaks beside our transformers; if this
    # starts passing, the shim can go.
    proc = _run('import mmpretrain.models')
    assert proc.returncode != 0
    assert 'TypeError' in proc.stderr or 'ImportError' in proc.stderr


@pytest.mark.slow
def test_mmllava_then_mmpretrain_models_import_and_build():
    code = '\n'.join([
        'import mmllava',
        'import mmpretrain.models',
        'from mmllava.registry import MODELS',
        'from mmllava.utils import register_all_modules',
        'register_all_modules()',
        "vit = MODELS.build(dict(type='VisionTransformer', arch='b', img_size=32, patch_size=16))",
        "print(type(vit).__module__)",
        "placeholder = MODELS.get('Blip2Caption')",
        'try:',
        '    placeholder()',
        'except ImportError as e:',
        "    print('placeholder raises ImportError')",
    ])
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert 'mmpretrain.models.backbones.vision_transformer' in proc.stdout
    assert 'placeholder raises ImportError' in proc.stdout


def test_shim_is_noop_after_models_imported(monkeypatch):
    import importlib

    import mmpretrain.models  # noqa: F401  (already importable: mmllava applied the shim)
    import mmpretrain.utils.dependency as dependency

    from mmllava.utils import compat

    def no_import(name, *args, **kwargs):
        raise AssertionError(f'the shim imported {name} after mmpretrain.models')

    monkeypatch.setattr(importlib, 'import_module', no_import)
    untouched = object()
    monkeypatch.setattr(dependency, 'WITH_MULTIMODAL', untouched)
    compat.patch_mmpretrain_multimodal()
    assert dependency.WITH_MULTIMODAL is untouched


def test_shim_switches_multimodal_off_before_models_imported(monkeypatch):
    import mmpretrain.utils.dependency as dependency

    from mmllava.utils import compat
    monkeypatch.delitem(sys.modules, 'mmpretrain.models')
    monkeypatch.setattr(dependency, 'WITH_MULTIMODAL', True)
    compat.patch_mmpretrain_multimodal()
    assert dependency.WITH_MULTIMODAL is False


if __name__ == '__main__':
    pytest.main([__file__])
