"""The SigLIP tower (LLaVA-OneVision, LLaVA-Video): transformers' features, its keys, and a
LLaVA built on it."""
import pytest
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from mmllava.models import IMAGE_TOKEN_INDEX, HFSiglipVisionEncoder
from mmllava.registry import MODELS

# SigLIP-so400m-384's layout, small: no CLS token, 16 patches of 8 px.
SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
              image_size=32, patch_size=8)
QWEN2 = dict(model_type='qwen2', hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
             max_position_embeddings=256, tie_word_embeddings=True)


@pytest.fixture(scope='module')
def reference():
    torch.manual_seed(0)
    return SiglipVisionModel(SiglipVisionConfig(**SIGLIP)).eval()


@pytest.mark.parametrize('select_layer', [-1, -2, 1])
def test_features_equal_transformers_hidden_states(reference, select_layer):
    ours = HFSiglipVisionEncoder(SIGLIP, select_layer=select_layer).eval()
    # Every key of transformers' tower, head and post layer norm included, under vision_model.
    missing, unexpected = ours.vision_model.load_state_dict(reference.state_dict(), strict=True)
    assert not missing and not unexpected
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixels, output_hidden_states=True).hidden_states[select_layer]
        got = ours(pixels)
    assert got.shape == (2, 16, 32) and ours.num_image_tokens == 16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_post_layernorm_and_head_are_kept_but_not_run():
    ours = HFSiglipVisionEncoder(SIGLIP)
    keys = set(ours.state_dict())
    assert 'vision_model.post_layernorm.weight' in keys
    assert any(k.startswith('vision_model.head.') for k in keys)
    with torch.no_grad():
        before = ours(torch.ones(1, 3, 32, 32))
        ours.vision_model.post_layernorm.weight.mul_(3)
        after = ours(torch.ones(1, 3, 32, 32))
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_bad_selection_is_refused():
    with pytest.raises(ValueError, match="must be 'full'"):
        HFSiglipVisionEncoder(SIGLIP, select_feature='patch')
    with pytest.raises(ValueError, match='out of range for a 3-layer'):
        HFSiglipVisionEncoder(SIGLIP, select_layer=-5)


def test_llava_on_a_siglip_tower_and_a_qwen2_llm():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='Llava', vision_encoder=dict(type='HFSiglipVisionEncoder', config=SIGLIP),
        projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
        llm=dict(type='HFCausalLM', config=QWEN2))).eval()
    assert model.num_image_tokens == 16
    ids = torch.tensor([[5, 6] + [IMAGE_TOKEN_INDEX] * 16 + [7, 8]])
    pixels = torch.randn(1, 3, 32, 32)
    embeds = model.embed_inputs(ids, pixels)
    features = model.encode_images(pixels)
    torch.testing.assert_close(embeds[0, 2:18], features[0])
    with torch.no_grad():
        logits = model.llm(inputs_embeds=embeds).logits
    assert logits.shape == (1, 20, 300) and torch.isfinite(logits).all()
