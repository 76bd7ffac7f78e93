"""Exact key mappings between mmllava's LLaVA and other LLaVA checkpoint layouts.

Every key is mapped, or a :class:`KeyMappingError` names the keys (and shapes) that are not;
``rotary_emb.inv_freq`` (and the ``position_ids`` buffers of old CLIP checkpoints, which
transformers recomputes) are the only keys dropped. Tensors are never copied or cast, so
round trips are bit-identical.

Layouts (``i``: LLM layer, ``j``: CLIP layer):

=============  ===================================  ====================================
part           mmllava                              llava-hf classic (``llava-hf``)
=============  ===================================  ====================================
LLM            ``llm.model.*``                      ``language_model.model.*``
LM head        ``llm.lm_head.weight``               ``language_model.lm_head.weight``
projector      ``projector.0.*``, ``projector.2.*`` ``multi_modal_projector.linear_1/2.*``
vision         ``vision_tower.vision_model.*``      ``vision_tower.vision_model.*``
newline        ``image_newline`` (NeXT family)      ``image_newline``
=============  ===================================  ====================================

transformers 5 writes the classic layout except for ``vision_tower.*`` without the
``vision_model`` level (``llava-hf-v5``); its in-memory names (``model.language_model.*``,
``model.vision_tower.*``, ``model.multi_modal_projector.*``, ``lm_head.*``) are read too.
The original LLaVA (``original``) keeps the LLaMA names (``model.layers.*``, ``lm_head.weight``)
with ``model.mm_projector.*`` and the CLIP tower in a separate HF CLIP checkpoint
(``vision_model.*``). mmpretrain's converted LLaVA (``mmpretrain``) prefixes the original's
LLM with ``model.lang_encoder.`` and names the CLIP ViT in mmpretrain's ``VisionTransformer``
names (``patch_embed.projection``, ``layers.{j}.attn.qkv`` ...).
"""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

StateDict = Dict[str, torch.Tensor]

# Recomputed buffers that old checkpoints carry (transformers < 4.31 LLaMA, old CLIP).
_DROPPED = (re.compile(r'(^|\.)rotary_emb\.inv_freq$'),
            re.compile(r'(^|\.)embeddings\.position_ids$'))

# (ours, theirs) prefix pairs; the first matching prefix wins.
_HF_CLASSIC = (
    ('llm.model.', 'language_model.model.'),
    ('llm.lm_head.', 'language_model.lm_head.'),
    ('projector.0.', 'multi_modal_projector.linear_1.'),
    ('projector.2.', 'multi_modal_projector.linear_2.'),
    ('vision_tower.vision_model.', 'vision_tower.vision_model.'),
)
_HF_CLASSIC += (('image_newline', 'image_newline'), )  # the NeXT family's learned newline
_HF_V5_DISK = _HF_CLASSIC[:4] + (('vision_tower.vision_model.', 'vision_tower.'),
                                 ('image_newline', 'image_newline'))
_HF_V5_MEMORY = (
    ('llm.model.', 'model.language_model.'),
    ('llm.lm_head.', 'lm_head.'),
    ('projector.0.', 'model.multi_modal_projector.linear_1.'),
    ('projector.2.', 'model.multi_modal_projector.linear_2.'),
    ('vision_tower.vision_model.', 'model.vision_tower.'),
    ('image_newline', 'model.image_newline'),
)
HF_LAYOUTS = {'llava-hf': _HF_CLASSIC, 'llava-hf-v5': _HF_V5_DISK,
              'llava-hf-v5-memory': _HF_V5_MEMORY}


class KeyMappingError(ValueError):
    """Keys that no rule of the layout maps."""

    def __init__(self, layout: str, keys: Sequence[str], state_dict: Mapping, hint: str = ''):
        shown = [f'    {k}: {list(state_dict[k].shape)}' for k in sorted(keys)[:30]]
        if len(keys) > 30:
            shown.append(f'    ... and {len(keys) - 30} more')
        super().__init__(f'{len(keys)} keys are not part of the {layout} LLaVA layout:\n'
                         + '\n'.join(shown) + (f'\n{hint}' if hint else ''))
        self.keys = list(keys)


def is_dropped(key: str) -> bool:
    """Whether ``key`` is a recomputed buffer that conversions drop."""
    return any(p.search(key) for p in _DROPPED)


def rename_prefixes(state_dict: Mapping[str, torch.Tensor], rules: Sequence[Tuple[str, str]],
                    layout: str, reverse: bool = False) -> StateDict:
    """Rename keys by prefix rules ``(ours, theirs)``; unmatched keys raise.

    Args:
        state_dict (Mapping): The tensors to rename.
        rules (Sequence[tuple[str, str]]): ``(ours, theirs)`` prefix pairs.
        layout (str): The layout's name, for errors.
        reverse (bool): Map ours -> theirs (default theirs -> ours).

    Returns:
        dict[str, Tensor]: The same tensor objects under new names.
    """
    pairs = [(b, a) if reverse else (a, b) for a, b in rules]
    out, unmapped = {}, []
    for key, value in state_dict.items():
        if is_dropped(key):
            continue
        for ours, theirs in pairs:
            if key.startswith(theirs):
                new = ours + key[len(theirs):]
                if new in out:
                    raise KeyMappingError(layout, [key], state_dict,
                                          f'it maps to {new}, which another key maps to too')
                out[new] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise KeyMappingError(layout, unmapped, state_dict)
    return out


# ---------------------------------------------------------------------------- layout detection
def detect_layout(keys: Sequence[str]) -> str:
    """Name the LLaVA layout of a set of keys.

    Returns:
        str: ``'mmllava'``, ``'llava-hf'``, ``'llava-hf-v5'``, ``'llava-hf-v5-memory'``,
        ``'original'`` or ``'mmpretrain'``.

    Raises:
        ValueError: No known layout fits.
    """
    keys = list(keys)

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has('llm.model.'):
        return 'mmllava'
    if has('language_model.model.'):
        return 'llava-hf' if has('vision_tower.vision_model.') or not has('vision_tower.') \
            else 'llava-hf-v5'
    if has('model.language_model.'):
        return 'llava-hf-v5-memory'
    if has('model.lang_encoder.'):
        return 'mmpretrain'
    if has('model.layers.') or has('model.embed_tokens.'):
        return 'original'
    raise ValueError(f'Unknown checkpoint layout; first keys: {keys[:8]}')


# ---------------------------------------------------------------------------- llava-hf
def hf_to_mmllava(state_dict: Mapping[str, torch.Tensor],
                  layout: Optional[str] = None) -> StateDict:
    """llava-hf (classic, transformers-5 disk or in-memory names) -> mmllava."""
    layout = layout or detect_layout(state_dict)
    if layout not in HF_LAYOUTS:
        raise ValueError(f'Not a llava-hf layout: {layout}')
    return rename_prefixes(state_dict, HF_LAYOUTS[layout], layout)


def mmllava_to_hf(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmllava -> llava-hf classic (read by transformers 4.x and 5.x alike)."""
    return rename_prefixes(state_dict, _HF_CLASSIC, 'mmllava', reverse=True)


# ---------------------------------------------------------------------------- original LLaVA
# The projector lives inside ``model.``: its rule must come first.
_ORIGINAL = (
    ('projector.', 'model.mm_projector.'),
    ('image_newline', 'model.image_newline'),  # LLaVA-NeXT
    ('llm.model.', 'model.'),
    ('llm.lm_head.', 'lm_head.'),
)


# An original checkpoint whose tower was trained/saved keeps it under this prefix.
ORIGINAL_TOWER_PREFIX = 'model.vision_tower.vision_tower.'


def split_clip_vision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Keep the ``vision_model.*`` part of an HF ``CLIPModel`` or ``CLIPVisionModel`` file.

    The text tower, ``visual_projection``, ``text_projection`` and ``logit_scale`` of a full
    ``CLIPModel`` are not part of LLaVA: they are left out by design. Any other key raises.
    """
    clip_only = ('text_model.', 'text_projection.', 'visual_projection.', 'logit_scale')
    vision, unmapped = {}, []
    for key, value in state_dict.items():
        if key.startswith('vision_model.'):
            if not is_dropped(key):
                vision[key] = value
        elif not key.startswith(clip_only) and not is_dropped(key):
            unmapped.append(key)
    if unmapped:
        raise KeyMappingError('HF CLIP', unmapped, state_dict)
    if not vision:
        raise ValueError('The CLIP checkpoint has no vision_model.* keys')
    return vision


def original_to_mmllava(state_dict: Mapping[str, torch.Tensor],
                        vision_state_dict: Optional[Mapping[str, torch.Tensor]] = None
                        ) -> StateDict:
    """Original LLaVA (LLM + ``model.mm_projector``) + HF CLIP vision weights -> mmllava.

    Args:
        state_dict (Mapping): The original checkpoint (``model.*``, ``lm_head.weight``).
            A tower saved inside it (``model.vision_tower.vision_tower.vision_model.*``) is
            used when ``vision_state_dict`` is None.
        vision_state_dict (Mapping, optional): HF CLIP weights (``vision_model.*``; a full
            ``CLIPModel`` is reduced by :func:`split_clip_vision`).
    """
    inner_tower = {k[len(ORIGINAL_TOWER_PREFIX):]: v for k, v in state_dict.items()
                   if k.startswith(ORIGINAL_TOWER_PREFIX)}
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(ORIGINAL_TOWER_PREFIX)}
    if vision_state_dict is None:
        if not inner_tower:
            raise ValueError('The original LLaVA checkpoint holds no vision tower: give the '
                             'CLIP checkpoint (mm_vision_tower) as vision_state_dict')
        vision_state_dict = inner_tower
    out = rename_prefixes(state_dict, _ORIGINAL, 'original')
    vision = split_clip_vision(vision_state_dict)
    out.update({'vision_tower.' + k: v for k, v in vision.items()})
    return out


def mmllava_to_original(state_dict: Mapping[str, torch.Tensor]) -> Tuple[StateDict, StateDict]:
    """mmllava -> (original LLaVA LLM + projector, HF ``CLIPVisionModel`` weights)."""
    llm = {k: v for k, v in state_dict.items() if not k.startswith('vision_tower.')}
    vision = {k[len('vision_tower.'):]: v for k, v in state_dict.items()
              if k.startswith('vision_tower.')}
    return rename_prefixes(llm, _ORIGINAL, 'mmllava', reverse=True), vision


# ---------------------------------------------------------------------------- mmpretrain
_VIT_PLAIN = (
    # (HF CLIP vision_model suffix, mmpretrain ViT name); per-layer names use {j}.
    ('embeddings.patch_embedding.weight', 'patch_embed.projection.weight'),
    ('pre_layrnorm.weight', 'pre_norm.weight'),
    ('pre_layrnorm.bias', 'pre_norm.bias'),
    ('post_layernorm.weight', 'ln1.weight'),
    ('post_layernorm.bias', 'ln1.bias'),
)
_VIT_LAYER = (
    ('layer_norm1', 'ln1'),
    ('layer_norm2', 'ln2'),
    ('self_attn.out_proj', 'attn.proj'),
    ('mlp.fc1', 'ffn.layers.0.0'),
    ('mlp.fc2', 'ffn.layers.1'),
)
MMPRETRAIN_VIT_PREFIXES = ('model.vision_tower.', 'backbone.', 'visual.')


def mmpretrain_vit_to_hf_clip(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """mmpretrain ``VisionTransformer`` (OpenAI CLIP, ``pre_norm=True``) -> HF ``vision_model.*``.

    The fused ``attn.qkv`` splits into ``q_proj``/``k_proj``/``v_proj`` (OpenAI's
    ``in_proj`` order), ``cls_token`` (1, 1, C) and ``pos_embed`` (1, N+1, C) lose their
    leading unit dims. A ``final_norm=False`` ViT has no ``ln1``: then ``post_layernorm`` is
    absent from the result (LLaVA never computes it; the converter fills it and says so).
    """
    plain = {theirs: ours for ours, theirs in _VIT_PLAIN}
    out, unmapped = {}, []
    for key, value in state_dict.items():
        hf = None
        if key in plain:
            hf, new = plain[key], value
        elif key == 'cls_token':
            hf, new = 'embeddings.class_embedding', value.reshape(value.shape[-1])
        elif key == 'pos_embed':
            hf, new = 'embeddings.position_embedding.weight', value.reshape(value.shape[-2:])
        else:
            m = re.fullmatch(r'layers\.(\d+)\.(.+)\.(weight|bias)', key)
            if m:
                j, name, kind = m.groups()
                prefix = f'encoder.layers.{j}.'
                if name == 'attn.qkv':
                    for part, chunk in zip(('q', 'k', 'v'), value.chunk(3, dim=0)):
                        out[f'vision_model.{prefix}self_attn.{part}_proj.{kind}'] = chunk
                    continue
                names = {theirs: ours for ours, theirs in _VIT_LAYER}
                if name in names:
                    hf, new = f'{prefix}{names[name]}.{kind}', value
        if hf is None:
            if not is_dropped(key):
                unmapped.append(key)
            continue
        out['vision_model.' + hf] = new
    if unmapped:
        raise KeyMappingError('mmpretrain ViT', unmapped, state_dict)
    return out


def hf_clip_to_mmpretrain_vit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """HF ``vision_model.*`` -> mmpretrain ``VisionTransformer`` names (fused qkv)."""
    sd = {k[len('vision_model.'):]: v for k, v in state_dict.items()}
    plain = dict(_VIT_PLAIN)
    out, used = {}, set()
    for key, value in sd.items():
        if key in plain:
            out[plain[key]] = value
        elif key == 'embeddings.class_embedding':
            out['cls_token'] = value.reshape(1, 1, -1)
        elif key == 'embeddings.position_embedding.weight':
            out['pos_embed'] = value.unsqueeze(0)
        else:
            m = re.fullmatch(r'encoder\.layers\.(\d+)\.(.+)\.(weight|bias)', key)
            if m is None:
                raise KeyMappingError('HF CLIP', [key], sd)
            j, name, kind = m.groups()
            if name.startswith('self_attn.') and name[-6:] in ('q_proj', 'k_proj', 'v_proj'):
                if (j, kind) not in used:
                    used.add((j, kind))
                    parts = [sd[f'encoder.layers.{j}.self_attn.{p}_proj.{kind}'] for p in 'qkv']
                    out[f'layers.{j}.attn.qkv.{kind}'] = torch.cat(parts, dim=0)
                continue
            names = dict(_VIT_LAYER)
            if name not in names:
                raise KeyMappingError('HF CLIP', [key], sd)
            out[f'layers.{j}.{names[name]}.{kind}'] = value
    return out


def strip_vit_prefix(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The ViT part of an mmpretrain checkpoint, without its prefix.

    Keys under ``model.vision_tower.``, ``backbone.`` or ``visual.`` (mmpretrain's CLIP
    conversion) are kept when present; otherwise the whole dict is taken as the ViT. Other
    keys of a full mmpretrain CLIP checkpoint (its text tower, ``visual_proj``) are left out.
    """
    for prefix in MMPRETRAIN_VIT_PREFIXES:
        part = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if part:
            return part
    return dict(state_dict)


def mmpretrain_to_mmllava(state_dict: Mapping[str, torch.Tensor],
                          vision_state_dict: Optional[Mapping[str, torch.Tensor]] = None
                          ) -> Tuple[StateDict, List[str]]:
    """mmpretrain LLaVA (``model.lang_encoder.*`` [+ ``model.vision_tower.*``]) -> mmllava.

    Args:
        state_dict (Mapping): mmpretrain's converted LLaVA checkpoint.
        vision_state_dict (Mapping, optional): The vision tower, when ``state_dict`` has none:
            HF CLIP (``vision_model.*``) or mmpretrain ViT names.

    Returns:
        tuple: The mmllava state dict, and the keys that were filled in (``post_layernorm`` of
        a ``final_norm=False`` ViT: identity, never computed by LLaVA).
    """
    llm = {k[len('model.lang_encoder.'):]: v for k, v in state_dict.items()
           if k.startswith('model.lang_encoder.')}
    rest = {k: v for k, v in state_dict.items() if not k.startswith('model.lang_encoder.')}
    tower = {k: v for k, v in rest.items() if k.startswith('model.vision_tower.')}
    other = [k for k in rest if k not in tower and not is_dropped(k)]
    if other:
        raise KeyMappingError('mmpretrain', other, state_dict)
    if vision_state_dict is None:
        if not tower:
            raise ValueError('The mmpretrain checkpoint holds no vision tower '
                             '(model.vision_tower.*): give the CLIP weights (--vision-tower)')
        vision_state_dict = tower
    if any(k.startswith('vision_model.') for k in vision_state_dict):
        vision = split_clip_vision(vision_state_dict)
    else:
        vision = mmpretrain_vit_to_hf_clip(strip_vit_prefix(vision_state_dict))
    out = rename_prefixes(llm, _ORIGINAL, 'mmpretrain')
    filled = []
    for kind, fill in (('weight', torch.ones_like), ('bias', torch.zeros_like)):
        key = f'vision_model.post_layernorm.{kind}'
        if key not in vision:
            ref = vision['vision_model.pre_layrnorm.weight']
            vision[key] = fill(ref)
            filled.append('vision_tower.' + key)
    out.update({'vision_tower.' + k: v for k, v in vision.items()})
    return out, filled


def hf_clip_to_base(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An HF ``CLIPModel``/``CLIPVisionModel`` checkpoint -> our ``vision_tower.*`` base part."""
    return {'vision_tower.' + k: v for k, v in split_clip_vision(state_dict).items()}


def hf_causal_lm_to_base(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An HF causal LM checkpoint (``model.*``, ``lm_head.weight``) -> our ``llm.*`` base part.

    Vicuna/LLaMA files written by transformers; any key outside ``model.``/``lm_head.``
    raises (e.g. an LLaVA checkpoint given by mistake, whose ``mm_projector`` has no place in
    an LLM base).
    """
    rules = (('llm.model.', 'model.'), ('llm.lm_head.', 'lm_head.'))
    projector = [k for k in state_dict if 'mm_projector' in k or 'vision_tower' in k]
    if projector:
        raise KeyMappingError('HF causal LM', projector, state_dict,
                              hint='This is a LLaVA checkpoint: convert it with '
                                   'tools/model_converters/llava_to_mmllava.py instead.')
    return rename_prefixes(state_dict, rules, 'HF causal LM')
