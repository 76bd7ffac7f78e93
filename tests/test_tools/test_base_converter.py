"""tools/model_converters/base_to_mmllava.py: HF CLIP and LLaMA bases for the 7B recipes."""
import sys
from pathlib import Path

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

from mmllava.convert import KeyMappingError, hf_causal_lm_to_base
from mmllava.engine.checkpoint import load_partial_weights, load_weights
from mmllava.registry import MODELS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'model_converters'))
import base_to_mmllava  # noqa: E402

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=30, patch_size=6, hidden_act='quick_gelu')
LLM = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=4, vocab_size=300, max_position_embeddings=128,
           tie_word_embeddings=False)


def test_clip_and_llm_bases_load_into_llava(tmp_path):
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(vision_config=VISION, text_config=dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        vocab_size=50), projection_dim=8))
    clip.save_pretrained(tmp_path / 'clip')
    llm = LlamaForCausalLM(LlamaConfig(**LLM))
    llm.save_pretrained(tmp_path / 'llm')
    base_to_mmllava.main(['clip', str(tmp_path / 'clip'), str(tmp_path / 'clip.safetensors')])
    base_to_mmllava.main(['llm', str(tmp_path / 'llm'), str(tmp_path / 'llm.safetensors')])

    model = MODELS.build(dict(
        type='Llava', vision_encoder=dict(type='HFCLIPVisionEncoder', config=VISION),
        projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
        llm=dict(type='HFCausalLM', config=dict(model_type='llama', **LLM))))
    base = {**load_weights(tmp_path / 'clip.safetensors'),
            **load_weights(tmp_path / 'llm.safetensors')}
    load_partial_weights(model, base)
    ours = model.state_dict()
    # Everything but the (new) projector comes from the two bases, bit for bit.
    assert set(ours) - set(base) == {'projector.0.weight', 'projector.0.bias',
                                     'projector.2.weight', 'projector.2.bias'}
    for key, value in clip.vision_model.state_dict().items():
        assert torch.equal(ours['vision_tower.vision_model.' + key], value), key
    for key, value in llm.state_dict().items():
        assert torch.equal(ours['llm.' + key], value), key


def test_llava_checkpoint_refused_as_llm_base():
    state = {'model.embed_tokens.weight': torch.zeros(2, 2),
             'model.mm_projector.0.weight': torch.zeros(2, 2)}
    with pytest.raises(KeyMappingError, match='llava_to_mmllava'):
        hf_causal_lm_to_base(state)
