"""Any LLaVA checkpoint -> an mmllava folder (model.safetensors, tokenizer, config.py)."""
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from mmllava.engine.checkpoint import load_weights, save_weights

from . import arch as A
from .config_writer import write_config
from .keymaps import (
    HF_LAYOUTS,
    detect_layout,
    hf_to_mmllava,
    mmpretrain_to_mmllava,
    original_to_mmllava,
)
from .tokenizer import copy_tokenizer_files, tokenizer_folder

_WEIGHT_EXTS = ('.safetensors', '.bin', '.pth', '.pt')


@dataclass
class Converted:
    """A checkpoint read into mmllava's layout.

    Attributes:
        format (str): ``'llava-hf'``, ``'llava-hf-v5'``, ``'original'`` or ``'mmpretrain'``.
        state_dict (dict[str, Tensor]): mmllava keys, the source's tensors.
        arch (dict): The architecture (see :mod:`mmllava.convert.arch`).
        tokenizer_dir (str | None): Where the tokenizer files are.
        notes (list[str]): What the user should know (filled keys, assumptions).
    """
    format: str
    state_dict: Dict[str, torch.Tensor]
    arch: dict
    tokenizer_dir: Optional[str]
    notes: List[str] = field(default_factory=list)


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _image_stats(folder: str, arch: dict) -> None:
    """Take the image mean/std of a llava-hf image processor config when present."""
    for name in ('preprocessor_config.json', 'processor_config.json'):
        path = osp.join(folder, name)
        if osp.isfile(path):
            cfg = _read_json(path)
            cfg = cfg.get('image_processor', cfg)
            if 'image_mean' in cfg and 'image_std' in cfg:
                arch['image_mean'], arch['image_std'] = cfg['image_mean'], cfg['image_std']
                return


def _added_tokens(folder: str) -> Dict[str, int]:
    """Added tokens (content -> id) of an HF tokenizer folder."""
    added = {}
    path = osp.join(folder, 'tokenizer.json')
    if osp.isfile(path):
        added.update({t['content']: t['id'] for t in _read_json(path).get('added_tokens', [])})
    path = osp.join(folder, 'tokenizer_config.json')
    if osp.isfile(path):
        decoder = _read_json(path).get('added_tokens_decoder') or {}
        added.update({t['content']: int(i) for i, t in decoder.items()})
    path = osp.join(folder, 'added_tokens.json')
    if osp.isfile(path):
        added.update(_read_json(path))
    return added


def _pad_id(folder: Optional[str], fallback) -> int:
    """The id of the tokenizer's pad token (llava-hf adds ``<pad>``), else ``fallback``."""
    if folder:
        pad = '<pad>'
        path = osp.join(folder, 'tokenizer_config.json')
        if osp.isfile(path):
            pad = _read_json(path).get('pad_token') or pad
            pad = pad.get('content') if isinstance(pad, dict) else pad
        added = _added_tokens(folder)
        if pad in added:
            return int(added[pad])
    return int(fallback) if fallback is not None else 0


def _load_vision_tower(path: str):
    """(weights, CLIP config dict or None) of a CLIP folder or file."""
    if osp.isdir(path):
        cfg_path = osp.join(path, 'config.json')
        if not osp.isfile(cfg_path):
            raise FileNotFoundError(f'The CLIP folder {path} has no config.json')
        return load_weights(path, progress=True), _read_json(cfg_path)
    return load_weights(path), None


def _arch_config(path: Optional[str]) -> Optional[dict]:
    if path is None:
        return None
    return _read_json(osp.join(path, 'config.json') if osp.isdir(path) else path)


def read_llava_hf(folder: str, config: dict, state_dict: dict, layout: str) -> Converted:
    sd = hf_to_mmllava(state_dict, layout)
    arch = A.arch_from_llava_hf(config, sd)
    notes = []
    declared = (config.get('text_config') or {}).get('vocab_size')
    if declared is not None and declared != A.vocab_rows(sd):
        notes.append(f'text_config.vocab_size is {declared} but the weights hold '
                     f'{A.vocab_rows(sd)} rows: the config uses the rows')
    _image_stats(folder, arch)
    arch['pad_token_id'] = _pad_id(folder, arch['llm'].get('pad_token_id'))
    return Converted(layout, sd, arch, folder, notes)


def read_original(folder: str, config: dict, state_dict: dict,
                  vision_tower: Optional[str]) -> Converted:
    if config.get('mm_use_im_start_end'):
        # LLaVA-1's <im_start><image><im_end> prompts (vocab 32003) are not reproduced here.
        raise ValueError(f'{folder}: mm_use_im_start_end=True (LLaVA-1 style '
                         '<im_start><image><im_end> prompts) is not supported; LLaVA-1.5 and '
                         'later checkpoints set it to false')
    tower = vision_tower
    if tower is None:
        named = config.get('mm_vision_tower')
        for candidate in (named, osp.join(folder, named or '')):
            if named and osp.isdir(candidate):
                tower = candidate
                break
        else:
            raise FileNotFoundError(
                f"The original LLaVA checkpoint's vision tower {named!r} (mm_vision_tower) is "
                'not a local folder: download it (e.g. openai/clip-vit-large-patch14-336) and '
                'pass it with --vision-tower CLIP_DIR')
    has_inner = any(k.startswith('model.vision_tower.') for k in state_dict)
    if has_inner and osp.isfile(osp.join(tower, 'config.json')):
        # The tower's weights are in the checkpoint: only its architecture is read here.
        vision_sd, clip_cfg = None, _read_json(osp.join(tower, 'config.json'))
    else:
        vision_sd, clip_cfg = _load_vision_tower(tower)
    if clip_cfg is None:
        raise ValueError(f'--vision-tower for an original LLaVA must be an HF CLIP or SigLIP '
                         f'folder (config.json + weights), got {tower}')
    sd = original_to_mmllava(state_dict, None if has_inner else vision_sd)
    notes = [f'vision tower: {"the checkpoint" if has_inner else tower}']
    arch = A.arch_from_original(config, clip_cfg, sd, notes)
    arch['pad_token_id'] = _pad_id(folder, config.get('pad_token_id'))
    return Converted('original', sd, arch, folder, notes)


def read_mmpretrain(state_dict: dict, vision_tower: Optional[str],
                    arch_config: Optional[str]) -> Converted:
    vision_sd = clip_cfg = None
    if vision_tower is not None:
        vision_sd, clip_cfg = _load_vision_tower(vision_tower)
    sd, filled = mmpretrain_to_mmllava(state_dict, vision_sd)
    notes = [f'{k} is not in the source (a final_norm=False ViT); LLaVA never computes it: '
             'written as identity' for k in filled]
    cfg = _arch_config(arch_config)
    if cfg is not None and ('text_config' in cfg or 'vision_config' in cfg):
        arch = A.arch_from_llava_hf(cfg, sd)
        arch['llm']['vocab_size'] = A.vocab_rows(sd)
    elif cfg is not None:
        arch = A.arch_from_original(cfg, clip_cfg, sd)
    else:
        arch = A.infer_arch(sd)
        if clip_cfg is not None:
            arch['vision'] = A.vision_fields(A.clip_vision_config(clip_cfg))
        notes.append('architecture inferred from weight shapes (head dims: CLIP 64, LLaMA 128; '
                     'LLaMA-2 defaults for eps, rope theta, context): pass --arch-config to '
                     'read it from a config.json instead')
    arch['pad_token_id'] = 0
    return Converted('mmpretrain', sd, arch, None, notes)


def read_checkpoint(src: str, vision_tower: Optional[str] = None,
                    arch_config: Optional[str] = None) -> Converted:
    """Read any supported LLaVA checkpoint into mmllava's layout.

    Args:
        src (str): A llava-hf folder (``llava``, ``llava_next``, ``llava_next_video`` or
            ``llava_onevision``; classic or transformers-5 layout; safetensors or bin; sharded
            or not), an original LLaVA or LLaVA-NeXT folder (``config.json`` with ``mm_*``
            keys; ``llava_llama`` / ``llava_mistral`` / ``llava_qwen``), or an mmpretrain
            LLaVA ``.pth``.
        vision_tower (str, optional): HF CLIP folder (original LLaVA, when
            ``mm_vision_tower`` is not a local folder), or CLIP weights for an mmpretrain file
            without a tower (HF CLIP folder or mmpretrain ViT file).
        arch_config (str, optional): A llava-hf or original ``config.json`` (or its folder)
            giving the architecture of an mmpretrain file; otherwise inferred from shapes.

    Returns:
        Converted: weights, architecture, tokenizer folder, notes.
    """
    if osp.isfile(src) and src.endswith(_WEIGHT_EXTS):
        state_dict = load_weights(src)
        layout = detect_layout(state_dict)
        if layout == 'mmpretrain':
            return read_mmpretrain(state_dict, vision_tower, arch_config)
        folder = osp.dirname(src)
    elif osp.isdir(src):
        folder, state_dict, layout = src, None, None
    else:
        raise FileNotFoundError(f'No checkpoint at {src}')
    cfg_path = osp.join(folder, 'config.json')
    if not osp.isfile(cfg_path):
        raise FileNotFoundError(f'{folder} has no config.json: cannot tell its architecture')
    config = _read_json(cfg_path)
    if state_dict is None:
        state_dict = load_weights(folder, progress=True)
        layout = detect_layout(state_dict)
    if any(k.startswith('mm_') for k in config):
        if layout != 'original':
            raise ValueError(f'{src}: config.json is an original LLaVA config but the weights '
                             f'are in the {layout} layout')
        return read_original(folder, config, state_dict, vision_tower)
    if config.get('model_type') in A.HF_FAMILIES:
        if layout not in HF_LAYOUTS:
            raise ValueError(f'{src}: config.json is a llava-hf config but the weights are in '
                             f'the {layout} layout')
        return read_llava_hf(folder, config, state_dict, layout)
    raise ValueError(f'{cfg_path} is neither a llava-hf config (model_type one of '
                     f'{", ".join(A.HF_FAMILIES)}) nor an original LLaVA / LLaVA-NeXT config '
                     '(mm_* keys)')


def convert_to_mmllava(src: str, out_dir: str, vision_tower: Optional[str] = None,
                       tokenizer: Optional[str] = None, arch_config: Optional[str] = None,
                       verbose: bool = True, base_config: Optional[str] = None
                       ) -> Dict[str, object]:
    """Convert a LLaVA checkpoint to an mmllava folder.

    ``out_dir`` receives ``model.safetensors`` (the source's tensors, bit for bit), the
    tokenizer files, and ``config.py`` (see :func:`mmllava.convert.write_config`), so that
    ``get_model(out_dir + '/config.py', pretrained=out_dir + '/model.safetensors')`` works.
    ``config.py`` names ``tokenizer.model`` when the source has one (sentencepiece, the
    original LLaVA's ids), else ``tokenizer.json`` (what transformers 5 saves).

    Args:
        src (str): See :func:`read_checkpoint`.
        out_dir (str): The output folder (created).
        vision_tower (str, optional): See :func:`read_checkpoint`.
        tokenizer (str, optional): A folder, ``tokenizer.model`` or ``tokenizer.json`` to take
            the tokenizer from instead of ``src``'s (mmpretrain files carry none).
        arch_config (str, optional): See :func:`read_checkpoint`.
        verbose (bool): Print what was written.
        base_config (str, optional): The zoo config ``config.py`` is written over (e.g. the
            config of the zoo model ``out_dir`` is named after); see
            :func:`~mmllava.convert.build_config_text`.

    Returns:
        dict: ``format``, ``files`` (written paths), ``notes``, ``arch``.
    """
    conv = read_checkpoint(src, vision_tower, arch_config)
    _check_buildable(conv)
    os.makedirs(out_dir, exist_ok=True)
    weights = osp.join(out_dir, 'model.safetensors')
    save_weights(conv.state_dict, weights, metadata={'source_format': conv.format})
    tok_dir = tokenizer_folder(tokenizer) or conv.tokenizer_dir
    copied = []
    if tok_dir is not None:
        if tokenizer is not None and osp.isfile(tokenizer):
            import shutil
            name = 'tokenizer.json' if tokenizer.endswith('.json') else 'tokenizer.model'
            shutil.copyfile(tokenizer, osp.join(out_dir, name))
            copied = [name]
        else:
            copied = copy_tokenizer_files(tok_dir, out_dir)
    tokenizer_file = next((n for n in ('tokenizer.model', 'tokenizer.json') if n in copied),
                          None)
    if tokenizer_file is None:
        conv.notes.append('no tokenizer.model or tokenizer.json found (give --tokenizer): '
                          'config.py sets model.tokenizer = None')
        conv.arch.setdefault('pad_token_id', 0)
    config = write_config(conv.arch, osp.join(out_dir, 'config.py'), tokenizer=tokenizer_file,
                          source=f'{osp.basename(osp.normpath(src))} ({conv.format})',
                          base=base_config)
    files = [weights, config] + [osp.join(out_dir, n) for n in copied]
    if verbose:
        print(f'Read {src} ({conv.format} layout): {len(conv.state_dict)} tensors')
        for note in conv.notes:
            print(f'  note: {note}')
        print(f'Wrote {out_dir}:')
        for path in files:
            print(f'  {osp.basename(path)}  ({osp.getsize(path) / 2**20:.1f} MiB)')
    return dict(format=conv.format, files=files, notes=conv.notes, arch=conv.arch)


def _check_buildable(conv: Converted) -> None:
    """Fail before writing if the weights do not fit the architecture (on the meta device)."""
    from mmllava.engine.checkpoint import StateDictMismatchError, compare_state_dict
    expected = expected_shapes(A.model_cfg_from_arch(conv.arch))
    result = compare_state_dict(expected, conv.state_dict)
    if any(result):
        raise StateDictMismatchError(*result, source='the converted weights')


def expected_shapes(model_cfg: dict) -> Dict[str, tuple]:
    """``{key: shape}`` of the LLaVA a ``model`` config builds (built on the meta device)."""
    import mmllava.models  # noqa: F401  (registers Llava)
    from mmllava.registry import MODELS
    cfg = dict(model_cfg, type='Llava', tokenizer=None)
    with torch.device('meta'):
        model = MODELS.build(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
