"""LLaVA architectures read from checkpoint configs (or weight shapes), and written back.

An architecture is a plain dict::

    dict(vision=dict(<CLIPVisionConfig kwargs>), select_layer=-2, select_feature='patch',
         projector_type='mlp2x_gelu', llm=dict(model_type='llama', <LlamaConfig kwargs>),
         image_mean=(...), image_std=(...), pad_token_id=0)

the same fields as an mmllava config's ``model`` and as a ``LlavaConfig``. The LLaVA-NeXT
family adds ``family`` (``'llava_next'``, ``'llava_next_video'``, ``'llava_onevision'``; plain
LLaVA is ``'llava'``), ``vision_type`` (``'clip'`` or ``'siglip'``), ``anyres`` (the model's and
``AnyresTiles``' dict) and ``video_pooling``; its LLM may be LLaMA, Mistral or Qwen2.
"""
import math
import re
from typing import Mapping, Optional

import torch
from transformers import CLIPVisionConfig, LlamaConfig

from mmllava.structures import CLIP_MEAN, CLIP_STD

_VISION_FIELDS = ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
                  'image_size', 'patch_size', 'hidden_act', 'layer_norm_eps', 'projection_dim',
                  'num_channels')
_LLM_FIELDS = ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
               'num_key_value_heads', 'hidden_act', 'max_position_embeddings', 'rms_norm_eps',
               'attention_bias', 'mlp_bias', 'tie_word_embeddings', 'bos_token_id',
               'eos_token_id', 'pad_token_id', 'sliding_window', 'use_sliding_window',
               'max_window_layers')
_SIGLIP_FIELDS = ('hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
                  'image_size', 'patch_size', 'hidden_act', 'layer_norm_eps', 'num_channels',
                  'vision_use_head')
# OpenAI CLIP's normalization (the LlavaDataPreprocessor default).
_STRATEGY_TO_HF = {'patch': 'default', 'cls_patch': 'full'}
_SUPPORTED_LLMS = ('llama', 'llava', 'llava_llama', 'mistral', 'qwen2')
# The original LLaVA-NeXT repository's model types -> the transformers LLM they wrap.
_ORIGINAL_LLMS = {'llava': 'llama', 'llava_llama': 'llama', 'llava_mistral': 'mistral',
                  'llava_qwen': 'qwen2'}
HF_FAMILIES = ('llava', 'llava_next', 'llava_next_video', 'llava_onevision')

# Defaults of LLaVA's LLaMA-2 / CLIP-L when nothing but weights is known (mmpretrain files).
CLIP_HEAD_DIM = 64
LLAMA_HEAD_DIM = 128


def vision_fields(config) -> dict:
    """The ``CLIPVisionConfig`` (or ``SiglipVisionConfig``) fields an mmllava config carries."""
    fields = _SIGLIP_FIELDS if config.model_type.startswith('siglip') else _VISION_FIELDS
    return {f: getattr(config, f) for f in fields}


def clip_vision_config(config: Mapping):
    """A ``CLIPVisionConfig`` (or ``SiglipVisionConfig``) from a tower's ``config.json``
    (a full ``CLIPConfig`` / ``SiglipConfig`` or a vision-only one)."""
    config = dict(config)
    siglip = str(config.get('model_type', '')).startswith('siglip')
    if 'vision_config' in config:
        config = dict(config['vision_config'])
    config.pop('model_type', None)
    if siglip:
        from transformers import SiglipVisionConfig
        return SiglipVisionConfig(**config)
    return CLIPVisionConfig(**config)


def llm_fields(config, vocab_rows: int) -> dict:
    """The LLM fields an mmllava config carries (those its config class has); ``vocab_size`` =
    rows in the weights."""
    model_type = _ORIGINAL_LLMS.get(config.model_type, config.model_type)
    out = dict(model_type=model_type)
    known = config.to_dict()
    out.update({f: getattr(config, f, None) for f in _LLM_FIELDS if f in known})
    out['vocab_size'] = vocab_rows
    head_dim = getattr(config, 'head_dim', None)
    if head_dim is not None and head_dim != config.hidden_size // config.num_attention_heads:
        out['head_dim'] = head_dim
    rope = dict(getattr(config, 'rope_parameters', None) or {})
    if rope.get('rope_type', 'default') == 'default':
        out['rope_theta'] = float(rope.get('rope_theta', getattr(config, 'rope_theta', 1e4)))
    else:
        out['rope_parameters'] = rope
    return out


def llm_config(config: Mapping):
    """The LLM config (``LlamaConfig``, ``MistralConfig``, ``Qwen2Config``) of an original
    LLaVA / LLaVA-NeXT ``config.json`` dict (``mm_*`` and other extra keys ignored)."""
    from transformers import AutoConfig
    config = dict(config)
    model_type = config.pop('model_type', 'llama')
    llm = _ORIGINAL_LLMS.get(model_type, model_type)
    if llm not in _SUPPORTED_LLMS:
        raise ValueError(f'Only LLaMA, Mistral and Qwen2 language models are supported, got '
                         f'model_type {model_type!r}')
    keep = {k: v for k, v in config.items() if not k.startswith('mm_')
            and k not in ('architectures', 'auto_map', 'text_config', 'vision_config',
                          'image_grid_pinpoints', 'image_aspect_ratio', 'image_crop_resolution',
                          'image_split_resolution', 'tokenizer_model_max_length',
                          'tokenizer_padding_side', 'tune_mm_mlp_adapter', 'freeze_mm_mlp_adapter')}
    return LlamaConfig(**keep) if llm == 'llama' else AutoConfig.for_model(llm, **keep)


def projector_type_of(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``'linear'`` or ``'mlp{N}x_gelu'`` from mmllava projector keys."""
    if 'projector.weight' in state_dict:
        return 'linear'
    linear = {int(m.group(1)) for k in state_dict
              for m in [re.fullmatch(r'projector\.(\d+)\.weight', k)] if m}
    if not linear or sorted(linear) != list(range(0, 2 * len(linear), 2)):
        raise ValueError(f'Unknown projector layout: {sorted(k for k in state_dict if k.startswith("projector."))}')  # noqa: E501
    return f'mlp{len(linear)}x_gelu'


def _count_layers(state_dict: Mapping, pattern: str) -> int:
    return len({m.group(1) for k in state_dict for m in [re.match(pattern, k)] if m})


def infer_vision(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """CLIP ViT fields from mmllava weights; heads assume a head dim of 64 (all OpenAI CLIPs)."""
    p = 'vision_tower.vision_model.'
    hidden = state_dict[p + 'embeddings.class_embedding'].shape[0]
    patch = state_dict[p + 'embeddings.patch_embedding.weight'].shape[-1]
    positions = state_dict[p + 'embeddings.position_embedding.weight'].shape[0]
    grid = math.isqrt(positions - 1)
    if hidden % CLIP_HEAD_DIM:
        raise ValueError(f'Cannot infer CLIP heads for width {hidden}: give the architecture')
    return dict(hidden_size=hidden,
                intermediate_size=state_dict[p + 'encoder.layers.0.mlp.fc1.weight'].shape[0],
                num_hidden_layers=_count_layers(
                    state_dict, re.escape(p) + r'encoder\.layers\.(\d+)'),
                num_attention_heads=hidden // CLIP_HEAD_DIM, image_size=grid * patch,
                patch_size=patch, hidden_act='quick_gelu', layer_norm_eps=1e-5,
                projection_dim=768, num_channels=3)


def infer_llm(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """LLaMA fields from mmllava weights: head dim 128 and LLaMA-2 defaults otherwise."""
    rows, hidden = state_dict['llm.model.embed_tokens.weight'].shape
    if hidden % LLAMA_HEAD_DIM:
        raise ValueError(f'Cannot infer LLaMA heads for width {hidden}: give the architecture')
    kv = state_dict['llm.model.layers.0.self_attn.k_proj.weight'].shape[0] // LLAMA_HEAD_DIM
    return dict(model_type='llama', hidden_size=hidden,
                intermediate_size=state_dict['llm.model.layers.0.mlp.gate_proj.weight'].shape[0],
                num_hidden_layers=_count_layers(state_dict, r'llm\.model\.layers\.(\d+)'),
                num_attention_heads=hidden // LLAMA_HEAD_DIM, num_key_value_heads=kv,
                hidden_act='silu', max_position_embeddings=4096, rms_norm_eps=1e-5,
                attention_bias=False, mlp_bias=False,
                tie_word_embeddings='llm.lm_head.weight' not in state_dict, bos_token_id=1,
                eos_token_id=2, pad_token_id=0, vocab_size=rows, rope_theta=10000.0)


def vocab_rows(state_dict: Mapping[str, torch.Tensor]) -> int:
    return state_dict['llm.model.embed_tokens.weight'].shape[0]


_HF_CONFIGS = {'llava': 'LlavaConfig', 'llava_next': 'LlavaNextConfig',
               'llava_next_video': 'LlavaNextVideoConfig',
               'llava_onevision': 'LlavaOnevisionConfig'}
# transformers' NeXT-Video pooler mode -> ours (it pools the tower's features).
_HF_POOL_MODES = {'average': 'AvgPool2x2FramePooling', 'max': 'MaxPool2x2FramePooling'}


def _max_num_tiles(aspect: Optional[str]) -> Optional[int]:
    """9 for OneVision's ``'anyres_max_9'``; None for plain ``'anyres'``."""
    m = re.fullmatch(r'anyres_max_(\d+)', aspect or '')
    return int(m.group(1)) if m else None


def anyres_cfg(pinpoints, vision: Mapping, select_feature: str,
               max_num_tiles: Optional[int] = None) -> dict:
    """The ``anyres`` dict of a NeXT-family model (and of its ``AnyresTiles`` step)."""
    side = vision['image_size'] // vision['patch_size']
    out = dict(image_grid_pinpoints=[list(map(int, p)) for p in pinpoints],
               tile_size=int(vision['image_size']), patches_per_side=side)
    if select_feature == 'cls_patch':
        out['base_tokens'] = side * side + 1
    if max_num_tiles is not None:
        out['max_num_tiles'] = max_num_tiles
    return out


def arch_from_llava_hf(config: Mapping, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of a llava-hf checkpoint (``llava``, ``llava_next``, ``llava_next_video``
    or ``llava_onevision``) from its ``config.json`` dict."""
    import transformers
    family = config.get('model_type', 'llava')
    if family not in _HF_CONFIGS:
        raise ValueError(f'model_type {family!r} is not a llava-hf family we read '
                         f'({", ".join(HF_FAMILIES)})')
    cfg = getattr(transformers, _HF_CONFIGS[family])(
        **{k: v for k, v in config.items() if k != 'model_type'})
    if cfg.text_config.model_type not in _SUPPORTED_LLMS:
        raise ValueError(f'Only LLaMA, Mistral and Qwen2 language models are supported, got '
                         f'{cfg.text_config.model_type!r}')
    if not isinstance(cfg.vision_feature_layer, int):
        raise ValueError(f'Multi-layer vision features ({cfg.vision_feature_layer}) are not '
                         'supported')
    if cfg.projector_hidden_act != 'gelu' or not getattr(cfg, 'multimodal_projector_bias', True):
        raise ValueError('Only the gelu projector with biases (LLaVA-1.5) is supported, got '
                         f'act={cfg.projector_hidden_act!r}')
    vision_type = 'siglip' if cfg.vision_config.model_type.startswith('siglip') else 'clip'
    strategies = {v: k for k, v in _STRATEGY_TO_HF.items()}
    feature = strategies[cfg.vision_feature_select_strategy]
    if vision_type == 'siglip':
        if feature != 'cls_patch':
            raise ValueError('a SigLIP tower has no CLS token: vision_feature_select_strategy '
                             f"must be 'full', got {cfg.vision_feature_select_strategy!r}")
        feature = 'full'
    arch = dict(family=family, vision_type=vision_type, vision=vision_fields(cfg.vision_config),
                select_layer=cfg.vision_feature_layer, select_feature=feature,
                projector_type=projector_type_of(state_dict),
                llm=llm_fields(cfg.text_config, vocab_rows(state_dict)))
    if family != 'llava':
        arch['anyres'] = anyres_cfg(cfg.image_grid_pinpoints, arch['vision'], feature,
                                    _max_num_tiles(getattr(cfg, 'vision_aspect_ratio', None)))
    if family == 'llava_next_video':
        mode = _HF_POOL_MODES.get(cfg.spatial_pool_mode)
        if mode is None or cfg.spatial_pool_stride != 2:
            raise ValueError(f'NeXT-Video pooling {cfg.spatial_pool_mode!r} of stride '
                             f'{cfg.spatial_pool_stride} is not supported (average or max, '
                             'stride 2)')
        arch['video_pooling'] = dict(type=mode, stage='vision')
    elif family == 'llava_onevision':
        arch['video_pooling'] = dict(type='BilinearFramePooling', newline=True)
    return arch


def _pinpoints(value, tile_size: int) -> list:
    """``image_grid_pinpoints`` as pixel (height, width) pairs; the LLaVA-NeXT repository's
    string form ``'(1x1),...,(6x6)'`` is the grid range in tiles."""
    if isinstance(value, str):
        found = re.findall(r'\((\d+)x(\d+)\)', value)
        if len(found) < 2:
            raise ValueError(f'image_grid_pinpoints {value!r}: expected "(AxB),...,(CxD)"')
        (r0, c0), (r1, c1) = [tuple(map(int, f)) for f in (found[0], found[-1])]
        return [[r * tile_size, c * tile_size] for r in range(r0, r1 + 1)
                for c in range(c0, c1 + 1)]
    return [list(map(int, p)) for p in value]


def _original_next(config: Mapping, arch: dict, notes: list) -> None:
    """The LLaVA-NeXT repository's ``image_aspect_ratio`` / ``mm_spatial_pool_*`` fields."""
    aspect = config.get('image_aspect_ratio', 'square')
    merge = config.get('mm_patch_merge_type', 'flat')
    if str(aspect).startswith('anyres'):
        if 'unpad' not in merge:
            raise ValueError(f'image_aspect_ratio={aspect!r} with mm_patch_merge_type='
                             f"{merge!r}: only 'spatial_unpad' (the released models) is supported")
        pinpoints = _pinpoints(config['image_grid_pinpoints'], arch['vision']['image_size'])
        arch['anyres'] = anyres_cfg(pinpoints, arch['vision'], arch['select_feature'],
                                    _max_num_tiles(aspect))
        arch['family'] = 'llava_next'
    mode = config.get('mm_spatial_pool_mode')
    if mode is None:
        return
    stride = int(config.get('mm_spatial_pool_stride', 2))
    if stride != 2:
        raise ValueError(f'mm_spatial_pool_stride={stride}: only 2 is supported')
    kinds = {'average': 'AvgPool2x2FramePooling', 'max': 'MaxPool2x2FramePooling',
             'bilinear': 'BilinearFramePooling'}
    if mode not in kinds:
        raise ValueError(f'mm_spatial_pool_mode={mode!r}: one of {sorted(kinds)} is supported')
    if 'mm_newline_position' not in config:
        notes.append("config.json has no mm_newline_position: the repository's default "
                     "'one_token' is used")
    position = config.get('mm_newline_position', 'one_token')
    if position not in ('one_token', 'grid', 'no_token'):
        raise ValueError(f"mm_newline_position={position!r}: 'one_token', 'grid' or "
                         "'no_token' is supported")
    if 'unpad' not in merge:
        position = 'no_token'  # the repository adds the clip newline only with spatial_unpad
    # The repository pools the projected frames (get_2dPool after the projector).
    arch['video_pooling'] = dict(type=kinds[mode], newline=position != 'no_token' and position)
    arch['family'] = 'llava_onevision' if mode == 'bilinear' else 'llava_next_video'


def arch_from_original(config: Mapping, clip_config: Optional[Mapping],
                       state_dict: Mapping[str, torch.Tensor],
                       notes: Optional[list] = None) -> dict:
    """Architecture of an original LLaVA / LLaVA-NeXT checkpoint (``mm_*`` keys) and its tower.

    LLaVA-NeXT's SigLIP tower drops the tower's last layer and reads the last hidden state
    whatever ``mm_vision_select_layer`` says: the layers are counted in the weights and the
    select layer is -1.
    """
    notes = [] if notes is None else notes
    projector = projector_type_of(state_dict)
    declared = config.get('mm_projector_type', 'linear')
    if declared != projector:
        raise ValueError(f'config.json says mm_projector_type={declared!r} but the weights hold '
                         f'a {projector!r} projector')
    feature = config.get('mm_vision_select_feature', 'patch')
    if feature not in _STRATEGY_TO_HF:
        raise ValueError(f'Unknown mm_vision_select_feature {feature!r}')
    vision_cfg = clip_vision_config(clip_config) if clip_config is not None else None
    vision = vision_fields(vision_cfg) if vision_cfg is not None else infer_vision(state_dict)
    arch = dict(family='llava', vision_type='clip', vision=vision,
                select_layer=config.get('mm_vision_select_layer', -2), select_feature=feature,
                projector_type=projector,
                llm=llm_fields(llm_config(config), vocab_rows(state_dict)))
    if vision_cfg is not None and vision_cfg.model_type.startswith('siglip'):
        layers = _count_layers(state_dict, r'vision_tower\.vision_model\.encoder\.layers\.(\d+)')
        arch.update(vision_type='siglip', select_layer=-1, select_feature='full')
        arch['vision']['num_hidden_layers'] = layers or vision['num_hidden_layers']
        arch['vision']['vision_use_head'] = any('vision_model.head.' in k for k in state_dict)
    _original_next(config, arch, notes)
    return arch


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture from weight shapes alone (LLaVA's select layer -2, patch tokens)."""
    return dict(vision=infer_vision(state_dict), select_layer=-2, select_feature='patch',
                projector_type=projector_type_of(state_dict), llm=infer_llm(state_dict))


_ENCODERS = {'clip': 'HFCLIPVisionEncoder', 'siglip': 'HFSiglipVisionEncoder'}


def _family_of(model_cfg: Mapping) -> str:
    """The llava-hf family an mmllava model config exports to."""
    pooling = model_cfg.get('video_pooling')
    if model_cfg.get('anyres') is None:
        if pooling not in (None, 'none'):
            raise ValueError('only NeXT-family models (anyres) with clip pooling export to '
                             f'llava-hf; this model pools clips by {pooling!r} without anyres')
        return 'llava'
    if pooling in (None, 'none'):
        return 'llava_next'
    kind = pooling if isinstance(pooling, str) else pooling.get('type')
    kind = {'avgpool2x2': 'AvgPool2x2FramePooling', 'maxpool2x2': 'MaxPool2x2FramePooling',
            'bilinear': 'BilinearFramePooling'}.get(kind, kind)
    stage = pooling.get('stage', 'projector') if isinstance(pooling, dict) else 'projector'
    newline = pooling.get('newline', False) if isinstance(pooling, dict) else False
    if kind in _HF_POOL_MODES.values() and stage == 'vision':
        return 'llava_next_video'
    if kind == 'BilinearFramePooling' and newline in (True, 'one_token'):
        return 'llava_onevision'
    raise ValueError(f'clip pooling {pooling!r} has no llava-hf equivalent (NeXT-Video pools '
                     "the tower's features: stage='vision'; OneVision is bilinear with "
                     'newline=True)')


def arch_from_mmllava_config(model_cfg: Mapping) -> dict:
    """Architecture of an mmllava config's ``model`` dict (for export)."""
    enc = model_cfg['vision_encoder']
    types = {v: k for k, v in _ENCODERS.items()}
    if enc.get('type') not in types:
        raise ValueError(f'Only {sorted(types)} export to llava-hf, got {enc.get("type")}')
    vision_type = types[enc['type']]
    if vision_type == 'siglip':
        from transformers import SiglipVisionConfig
        vision = vision_fields(SiglipVisionConfig(**enc['config']))
    else:
        vision = vision_fields(CLIPVisionConfig(**enc['config']))
    llm = dict(model_cfg['llm']['config'])
    pre = model_cfg.get('data_preprocessor') or {}
    arch = dict(family=_family_of(model_cfg), vision_type=vision_type, vision=vision,
                select_layer=enc.get('select_layer', -1 if vision_type == 'siglip' else -2),
                select_feature=enc.get('select_feature',
                                       'full' if vision_type == 'siglip' else 'patch'),
                projector_type=model_cfg['projector']['projector_type'], llm=llm,
                image_mean=tuple(pre.get('mean', CLIP_MEAN)),
                image_std=tuple(pre.get('std', CLIP_STD)),
                pad_token_id=pre.get('pad_token_id', 0))
    if model_cfg.get('anyres') is not None:
        arch['anyres'] = dict(model_cfg['anyres'])
    if model_cfg.get('video_pooling') not in (None, 'none'):
        arch['video_pooling'] = model_cfg['video_pooling']
    return arch


def model_cfg_from_arch(arch: Mapping) -> dict:
    """The parts of an mmllava ``model`` config that an architecture fixes."""
    pre = dict(type='LlavaDataPreprocessor', pad_token_id=int(arch.get('pad_token_id') or 0))
    if 'image_mean' in arch:
        pre.update(mean=list(arch['image_mean']), std=list(arch['image_std']))
    out = dict(
        vision_encoder=dict(type=_ENCODERS[arch.get('vision_type', 'clip')],
                            config=dict(arch['vision']), select_layer=arch['select_layer'],
                            select_feature=arch['select_feature']),
        projector=dict(type='LlavaProjector', projector_type=arch['projector_type']),
        llm=dict(type='HFCausalLM', config=dict(arch['llm'])),
        data_preprocessor=pre)
    # anyres always written, so that a config written over a base of another family is right;
    # a plain LLaVA keeps the clip pooling of its base (the action recipes choose it).
    out['anyres'] = dict(arch['anyres']) if arch.get('anyres') else None
    if arch.get('video_pooling') is not None or arch.get('family', 'llava') != 'llava':
        out['video_pooling'] = arch.get('video_pooling', 'none')
    return out
