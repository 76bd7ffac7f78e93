"""The shims of mmllava.utils.compat beyond mmpretrain's import (see test_compat.py): each works,
and each fails the way it says without it."""
import pickle

import pytest
import torch
from mmengine.config import Config

from mmllava.utils import compat


class _NotAWeight:
    """Pickled beside the tensors: ``weights_only`` loading refuses it."""


def test_trusted_torch_load_unpickles_its_file_only(tmp_path):
    ours, other = tmp_path / 'run.pth', tmp_path / 'other.pth'
    for path in (ours, other):
        torch.save({'meta': _NotAWeight(), 'w': torch.zeros(1)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ours)  # torch's default: weights only
    with compat.trusted_torch_load(str(ours)):
        assert isinstance(torch.load(ours)['meta'], _NotAWeight)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(other)  # any other file stays weights-only
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ours)  # and torch.load is itself again afterwards


def test_cache_pretty_text_formats_once(monkeypatch):
    calls = []
    original = Config.pretty_text.fget
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: calls.append(1) or original(self)))
    cfg = Config(dict(model=dict(type='X', depth=2)))
    cached = compat.cache_pretty_text(cfg)
    assert isinstance(cached, compat.CachedTextConfig) and type(cfg) is Config  # a copy
    text = cached.pretty_text
    assert cached.pretty_text == text and 'depth' in text
    assert len(calls) == 1
    cfg.pretty_text
    cfg.pretty_text
    assert len(calls) == 3  # the plain config formats on every read


def test_gloo_without_cuda(monkeypatch):
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    compat.use_gloo_without_cuda(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    compat.use_gloo_without_cuda(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    bare = Config(dict())
    compat.use_gloo_without_cuda(bare)
    assert bare.env_cfg.dist_cfg.backend == 'gloo'


def test_vqa_text_rules_are_the_official_ones():
    punctuation, digit_article = compat.vqa_text_rules()
    assert digit_article('two dogs and a cat') == '2 dogs and cat'  # number words, articles
    assert digit_article('dont') == "don't"  # contractions
    assert punctuation('yes.') == 'yes' and punctuation('3.5') == '3.5'


def test_import_mmllava_is_cheap_and_still_patches_mmpretrain():
    """``import mmllava`` imports neither torch nor mmpretrain (a tool's --help stays fast); the
    mmpretrain shim then applies when mmpretrain's models are first imported."""
    import subprocess
    import sys
    code = ('import sys, mmllava\n'
            "heavy = {'torch', 'mmpretrain', 'mmengine', 'transformers'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            'import mmpretrain.utils.dependency as d\n'
            'import mmpretrain.models\n'
            "assert d.WITH_MULTIMODAL is False\n")
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_this_thread_omp_threads_leaves_other_threads_alone():
    import threading

    import torch

    from mmllava.utils.compat import omp_available, this_thread_omp_threads
    if not omp_available():
        pytest.skip("torch's OpenMP library is not found in this build")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = {}
        with this_thread_omp_threads(1) as limited:
            assert limited and torch.get_num_threads() == 1
            worker = threading.Thread(target=lambda: seen.update(other=torch.get_num_threads()))
            worker.start()
            worker.join()
            torch.mm(torch.randn(64, 64), torch.randn(64, 64))  # MKL still works here
        assert seen['other'] == 2  # started meanwhile: the process-wide count
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
