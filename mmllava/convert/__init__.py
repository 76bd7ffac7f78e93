"""Checkpoint conversion between mmllava and llava-hf, original LLaVA and mmpretrain."""
from .arch import arch_from_llava_hf, arch_from_mmllava_config, arch_from_original, infer_arch
from .config_writer import build_config_text, write_config, zoo_config_path
from .keymaps import (
                      KeyMappingError,
                      detect_layout,
                      hf_causal_lm_to_base,
                      hf_clip_to_base,
                      hf_clip_to_mmpretrain_vit,
                      hf_to_mmllava,
                      mmllava_to_hf,
                      mmllava_to_original,
                      mmpretrain_to_mmllava,
                      mmpretrain_vit_to_hf_clip,
                      original_to_mmllava,
                      split_clip_vision,
)
from .to_hf import export_to_hf, pad_vocab_rows
from .to_mmllava import Converted, convert_to_mmllava, read_checkpoint
from .tokenizer import hf_tokenizer_from_sentencepiece

__all__ = [
    'Converted', 'KeyMappingError', 'arch_from_llava_hf', 'arch_from_mmllava_config',
    'arch_from_original', 'build_config_text', 'convert_to_mmllava', 'detect_layout',
    'export_to_hf', 'hf_causal_lm_to_base', 'hf_clip_to_base', 'hf_clip_to_mmpretrain_vit',
    'hf_to_mmllava', 'hf_tokenizer_from_sentencepiece', 'infer_arch', 'mmllava_to_hf',
    'mmllava_to_original', 'mmpretrain_to_mmllava', 'mmpretrain_vit_to_hf_clip',
    'original_to_mmllava', 'pad_vocab_rows', 'read_checkpoint', 'split_clip_vision',
    'write_config', 'zoo_config_path'
]
