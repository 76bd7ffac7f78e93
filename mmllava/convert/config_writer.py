"""Writes a complete mmllava config for a converted architecture."""
import os.path as osp
from pathlib import Path
from typing import Mapping, Optional

from mmengine.config import Config

from .arch import model_cfg_from_arch

# Nearest zoo config per projector family.
ZOO_BASES = {'linear': 'llava/llava-7b-v1_caption.py', 'mlp': 'llava/llava-7b-v1.5_vqa.py'}
TOKENIZER_FILE = '{{ fileDirname }}/tokenizer.model'
# Helper variables of the zoo's base model file; stale once ``model`` is overridden.
_STALE_TOP_LEVEL = ('llm', 'vision_encoder')


def zoo_config_path(name: str) -> Path:
    """Path of a zoo config (``'llava/llava-7b-v1.5_vqa.py'``) in this install."""
    package = Path(__file__).resolve().parents[1]
    for root in (package / '.mim' / 'configs', package.parent / 'configs'):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f'Zoo config {name} not found under {package}')


def zoo_base_for(arch: Mapping) -> str:
    """The zoo config nearest to an architecture (by projector family)."""
    return ZOO_BASES['linear' if arch['projector_type'] == 'linear' else 'mlp']


def _set_image_size(obj, size: int):
    # Pipelines hold the image size literally once the zoo config is loaded.
    if isinstance(obj, dict):
        if obj.get('type') == 'CLIPResizeCrop':
            obj['size'] = size
        for value in obj.values():
            _set_image_size(value, size)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _set_image_size(value, size)


def build_config_text(arch: Mapping, with_tokenizer: bool = True, source: str = '') -> str:
    """The text of an mmllava config for ``arch``.

    The nearest zoo config is loaded and the architecture written over it; the result is
    written out in full (not as ``_base_``) so the file loads with any install layout.
    ``model.tokenizer`` names ``tokenizer.model`` beside the config through mmengine's
    ``{{ fileDirname }}``.

    Args:
        arch (Mapping): An architecture (see :mod:`mmllava.convert.arch`).
        with_tokenizer (bool): Name ``tokenizer.model`` beside the config; else None.
        source (str): Where the weights came from, for the header comment.
    """
    base = zoo_base_for(arch)
    cfg = Config.fromfile(str(zoo_config_path(base))).to_dict()
    for key in _STALE_TOP_LEVEL:
        cfg.pop(key, None)
    model = cfg['model']
    parts = model_cfg_from_arch(arch)
    pre = dict(model.get('data_preprocessor') or {})
    pre.update(parts.pop('data_preprocessor'))
    model.update(parts, data_preprocessor=pre)
    model['tokenizer'] = (dict(type='SentencePieceTokenizer', model_file=TOKENIZER_FILE)
                          if with_tokenizer else None)
    size = arch['vision']['image_size']
    if 'image_size' in cfg:
        cfg['image_size'] = size
    _set_image_size(cfg, size)
    header = ('# Written by tools/model_converters/llava_to_mmllava.py'
              + (f' from {source}' if source else '') + '.\n'
              f'# The zoo config mmllava::{base}\n'
              "# with this checkpoint's architecture, written out in full.\n")
    return header + Config(cfg).pretty_text


def write_config(arch: Mapping, path: str, with_tokenizer: bool = True,
                 source: str = '') -> str:
    """Write :func:`build_config_text` to ``path``; returns the path."""
    text = build_config_text(arch, with_tokenizer, source)
    with open(path, 'w') as f:
        f.write(text)
    Config.fromfile(path)  # fail here, not at the user's first run
    return path


def tokenizer_path_of(model_cfg: Mapping, config_path: Optional[str] = None) -> Optional[str]:
    """The tokenizer file or folder an mmllava ``model`` config names, if any."""
    tok = model_cfg.get('tokenizer')
    if tok is None:
        return None
    if isinstance(tok, str):
        path = tok
    else:
        path = tok.get('model_file') or tok.get('name_or_path') or tok.get('path')
    if path and config_path and not osp.isabs(path):
        path = osp.join(osp.dirname(config_path), path)
    return path
