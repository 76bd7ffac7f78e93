"""LLaVA architectures read from checkpoint configs (or weight shapes), and written back.

An architecture is a plain dict::

    dict(vision=dict(<CLIPVisionConfig kwargs>), select_layer=-2, select_feature='patch',
         projector_type='mlp2x_gelu', llm=dict(model_type='llama', <LlamaConfig kwargs>),
         image_mean=(...), image_std=(...), pad_token_id=0)

the same fields as an mmllava config's ``model`` and as a ``LlavaConfig``.
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
               'eos_token_id', 'pad_token_id')
# OpenAI CLIP's normalization (the LlavaDataPreprocessor default).
_STRATEGY_TO_HF = {'patch': 'default', 'cls_patch': 'full'}
_SUPPORTED_LLMS = ('llama', 'llava', 'llava_llama')

# Defaults of LLaVA's LLaMA-2 / CLIP-L when nothing but weights is known (mmpretrain files).
CLIP_HEAD_DIM = 64
LLAMA_HEAD_DIM = 128


def vision_fields(config: CLIPVisionConfig) -> dict:
    """The ``CLIPVisionConfig`` fields an mmllava config carries."""
    return {f: getattr(config, f) for f in _VISION_FIELDS}


def clip_vision_config(config: Mapping) -> CLIPVisionConfig:
    """A ``CLIPVisionConfig`` from a CLIP ``config.json`` (``CLIPConfig`` or vision-only)."""
    config = dict(config)
    if 'vision_config' in config:
        config = dict(config['vision_config'])
    config.pop('model_type', None)
    return CLIPVisionConfig(**config)


def llm_fields(config: LlamaConfig, vocab_rows: int) -> dict:
    """The LLaMA fields an mmllava config carries; ``vocab_size`` = rows in the weights."""
    out = dict(model_type='llama')
    out.update({f: getattr(config, f, None) for f in _LLM_FIELDS})
    out['vocab_size'] = vocab_rows
    if config.head_dim != config.hidden_size // config.num_attention_heads:
        out['head_dim'] = config.head_dim
    rope = dict(getattr(config, 'rope_parameters', None) or {})
    if rope.get('rope_type', 'default') == 'default':
        out['rope_theta'] = float(rope.get('rope_theta', getattr(config, 'rope_theta', 1e4)))
    else:
        out['rope_parameters'] = rope
    return out


def llama_config(config: Mapping) -> LlamaConfig:
    """A ``LlamaConfig`` from a LLaMA-family ``config.json`` dict (extra keys ignored)."""
    config = dict(config)
    model_type = config.pop('model_type', 'llama')
    if model_type not in _SUPPORTED_LLMS:
        raise ValueError(f'Only LLaMA-family language models are supported, got model_type '
                         f'{model_type!r}')
    keep = {k: v for k, v in config.items() if not k.startswith('mm_')
            and k not in ('architectures', 'auto_map', 'text_config', 'vision_config')}
    return LlamaConfig(**keep)


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


def arch_from_llava_hf(config: Mapping, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of a llava-hf checkpoint from its ``config.json`` dict."""
    from transformers import LlavaConfig
    cfg = LlavaConfig(**{k: v for k, v in config.items() if k != 'model_type'})
    if cfg.text_config.model_type not in _SUPPORTED_LLMS:
        raise ValueError(f'Only LLaMA-family language models are supported, got '
                         f'{cfg.text_config.model_type!r}')
    if not isinstance(cfg.vision_feature_layer, int):
        raise ValueError(f'Multi-layer vision features ({cfg.vision_feature_layer}) are not '
                         'supported')
    if cfg.projector_hidden_act != 'gelu' or not getattr(cfg, 'multimodal_projector_bias', True):
        raise ValueError('Only the gelu projector with biases (LLaVA-1.5) is supported, got '
                         f'act={cfg.projector_hidden_act!r}')
    strategies = {v: k for k, v in _STRATEGY_TO_HF.items()}
    return dict(vision=vision_fields(cfg.vision_config), select_layer=cfg.vision_feature_layer,
                select_feature=strategies[cfg.vision_feature_select_strategy],
                projector_type=projector_type_of(state_dict),
                llm=llm_fields(cfg.text_config, vocab_rows(state_dict)))


def arch_from_original(config: Mapping, clip_config: Optional[Mapping],
                       state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture of an original LLaVA checkpoint (``mm_*`` keys) and its CLIP tower."""
    projector = projector_type_of(state_dict)
    declared = config.get('mm_projector_type', 'linear')
    if declared != projector:
        raise ValueError(f'config.json says mm_projector_type={declared!r} but the weights hold '
                         f'a {projector!r} projector')
    feature = config.get('mm_vision_select_feature', 'patch')
    if feature not in _STRATEGY_TO_HF:
        raise ValueError(f'Unknown mm_vision_select_feature {feature!r}')
    vision = (vision_fields(clip_vision_config(clip_config)) if clip_config is not None
              else infer_vision(state_dict))
    return dict(vision=vision, select_layer=config.get('mm_vision_select_layer', -2),
                select_feature=feature, projector_type=projector,
                llm=llm_fields(llama_config(config), vocab_rows(state_dict)))


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Architecture from weight shapes alone (LLaVA's select layer -2, patch tokens)."""
    return dict(vision=infer_vision(state_dict), select_layer=-2, select_feature='patch',
                projector_type=projector_type_of(state_dict), llm=infer_llm(state_dict))


def arch_from_mmllava_config(model_cfg: Mapping) -> dict:
    """Architecture of an mmllava config's ``model`` dict (for export)."""
    enc = model_cfg['vision_encoder']
    if enc.get('type') != 'HFCLIPVisionEncoder':
        raise ValueError(f"Only HFCLIPVisionEncoder exports to llava-hf, got {enc.get('type')}")
    vision = vision_fields(CLIPVisionConfig(**enc['config']))
    llm = dict(model_cfg['llm']['config'])
    pre = model_cfg.get('data_preprocessor') or {}
    return dict(vision=vision, select_layer=enc.get('select_layer', -2),
                select_feature=enc.get('select_feature', 'patch'),
                projector_type=model_cfg['projector']['projector_type'], llm=llm,
                image_mean=tuple(pre.get('mean', CLIP_MEAN)),
                image_std=tuple(pre.get('std', CLIP_STD)),
                pad_token_id=pre.get('pad_token_id', 0))


def model_cfg_from_arch(arch: Mapping) -> dict:
    """The parts of an mmllava ``model`` config that an architecture fixes."""
    pre = dict(type='LlavaDataPreprocessor', pad_token_id=int(arch.get('pad_token_id') or 0))
    if 'image_mean' in arch:
        pre.update(mean=list(arch['image_mean']), std=list(arch['image_std']))
    return dict(
        vision_encoder=dict(type='HFCLIPVisionEncoder', config=dict(arch['vision']),
                            select_layer=arch['select_layer'],
                            select_feature=arch['select_feature']),
        projector=dict(type='LlavaProjector', projector_type=arch['projector_type']),
        llm=dict(type='HFCausalLM', config=dict(arch['llm'])),
        data_preprocessor=pre)
