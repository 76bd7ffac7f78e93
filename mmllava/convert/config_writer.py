"""Writes a complete mmllava config for a converted architecture."""
import os.path as osp
from pathlib import Path
from typing import Mapping, Optional

from mmengine.config import Config

from .arch import model_cfg_from_arch

# The zoo config a conversion is written over, unless the output folder names another zoo model.
DEFAULT_BASE = 'llava/llava-7b-v1.5_vqa.py'
# ... by family (and LLM, for LLaVA-1.6's template): the pipeline and template of that family.
FAMILY_BASES = {
    ('llava_next', 'llama'): 'llava_next/llava-v1.6-vicuna-7b_vqa.py',
    ('llava_next', 'mistral'): 'llava_next/llava-v1.6-mistral-7b_vqa.py',
    ('llava_next_video', 'llama'): 'llava_next/llava-next-video-7b_vqa.py',
    ('llava_onevision', 'qwen2'): 'llava_onevision/llava-onevision-qwen2-7b-ov_vqa.py',
}


def default_base(arch: Mapping) -> str:
    """The zoo config a conversion of ``arch`` is written over by default."""
    family = arch.get('family', 'llava')
    if family == 'llava':
        return DEFAULT_BASE
    llm = arch['llm']['model_type']
    base = FAMILY_BASES.get((family, llm))
    if base is None:  # e.g. a NeXT-Video on Qwen2: the pipeline of the family, any LLM
        base = next((b for (f, _), b in FAMILY_BASES.items() if f == family), DEFAULT_BASE)
    return base
# How config.py names the tokenizer file copied beside it, by file name.
TOKENIZER_CONFIGS = {
    'tokenizer.model': dict(type='SentencePieceTokenizer',
                            model_file='{{ fileDirname }}/tokenizer.model'),
    'tokenizer.json': dict(type='JSONTokenizer', path='{{ fileDirname }}/tokenizer.json'),
}
# Helper variables of the zoo's base model file; stale once ``model`` is overridden.
_STALE_TOP_LEVEL = ('llm', 'vision_encoder')


def zoo_config_path(name: str) -> Path:
    """Path of a zoo config (``'llava/llava-7b-v1.5_vqa.py'``) in this install."""
    package = Path(__file__).resolve().parents[1]
    for root in (package / '.mim' / 'configs', package.parent / 'configs'):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f'Zoo config {name} not found under {package}')


def _set_steps(obj, arch: Mapping):
    """Pipelines hold sizes and counts literally once the zoo config is loaded: set them."""
    size = arch['vision']['image_size']
    if isinstance(obj, dict):
        kind = obj.get('type')
        if kind in ('CLIPResizeCrop', 'ResizeSquare'):
            obj['size'] = size
        elif kind == 'AnyresTiles' and arch.get('anyres'):
            obj.update({k: v for k, v in arch['anyres'].items()})
        elif kind == 'LoadVisuals' and 'video_pooling' in obj and 'video_pooling' in arch:
            obj['video_pooling'] = arch['video_pooling']
        for value in obj.values():
            _set_steps(value, arch)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _set_steps(value, arch)


def build_config_text(arch: Mapping, tokenizer: Optional[str] = 'tokenizer.model',
                      source: str = '', base: Optional[str] = None) -> str:
    """The text of an mmllava config for ``arch``.

    A zoo config is loaded and the architecture written over it; the result is written out in
    full (not as ``_base_``) so the file loads with any install layout. ``model.tokenizer``
    names the tokenizer file beside the config through mmengine's ``{{ fileDirname }}``.

    Args:
        arch (Mapping): An architecture (see :mod:`mmllava.convert.arch`).
        tokenizer (str, optional): The tokenizer file beside the config:
            ``'tokenizer.model'`` (:class:`~mmllava.conversation.SentencePieceTokenizer`),
            ``'tokenizer.json'`` (:class:`~mmllava.conversation.JSONTokenizer`), or None.
        source (str): Where the weights came from, for the header comment.
        base (str, optional): The zoo config written over (its task, question, generation and
            pipelines are kept), e.g. the one of the zoo name the folder is converted for;
            the family's (:func:`default_base`) when not given. A path or a name under ``configs/``.
    """
    base = base or default_base(arch)
    base_path = Path(base) if Path(base).is_file() else zoo_config_path(base)
    cfg = Config.fromfile(str(base_path)).to_dict()
    for key in _STALE_TOP_LEVEL:
        cfg.pop(key, None)
    model = cfg['model']
    parts = model_cfg_from_arch(arch)
    pre = dict(model.get('data_preprocessor') or {})
    pre.update(parts.pop('data_preprocessor'))
    model.update(parts, data_preprocessor=pre)
    if tokenizer is not None and tokenizer not in TOKENIZER_CONFIGS:
        raise ValueError(f'tokenizer must be one of {sorted(TOKENIZER_CONFIGS)} or None, got '
                         f'{tokenizer!r}')
    model['tokenizer'] = dict(TOKENIZER_CONFIGS[tokenizer]) if tokenizer else None
    if 'image_size' in cfg:
        cfg['image_size'] = arch['vision']['image_size']
    for key in ('anyres', 'video_pooling'):  # stale helper variables of the base
        if key in cfg and key in parts:
            cfg[key] = parts[key]
    _set_steps(cfg, arch)
    shown = base if not Path(base).is_file() else base_path.name
    header = ('# Written by tools/model_converters/llava_to_mmllava.py'
              + (f' from {source}' if source else '') + '.\n'
              f'# The zoo config mmllava::{shown}\n'
              "# with this checkpoint's architecture, written out in full.\n")
    return header + Config(cfg).pretty_text


def write_config(arch: Mapping, path: str, tokenizer: Optional[str] = 'tokenizer.model',
                 source: str = '', base: Optional[str] = None) -> str:
    """Write :func:`build_config_text` to ``path``; returns the path."""
    text = build_config_text(arch, tokenizer, source, base)
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
        path = tok.get('model_file') or tok.get('path') or tok.get('name_or_path')
    if path and config_path and not osp.isabs(path):
        path = osp.join(osp.dirname(config_path), path)
    return path
