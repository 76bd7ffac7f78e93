"""LLaVA-NeXT-Video and OneVision frame poolings against transformers: the NeXT-Video pooler
(average or max, stride 2, on the tower's features before the projector) and OneVision's
bilinear halving after it; their token counts are the pipeline's."""
import math
from types import SimpleNamespace

import pytest
import torch
from transformers.models.llava_next_video.modeling_llava_next_video import LlavaNextVideoPooler
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

from mmllava.models import BilinearFramePooling, build_frame_pooling
from mmllava.registry import MODELS
from mmllava.structures import num_visual_tokens

SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=36, patch_size=4)  # 9x9 patches: an odd side, as SigLIP's 27
LLM = dict(model_type='qwen2', hidden_size=48, intermediate_size=96, num_hidden_layers=1,
           num_attention_heads=4, num_key_value_heads=2, vocab_size=200,
           max_position_embeddings=2048)


def _config(mode='average'):
    vision = SimpleNamespace(image_size=36, patch_size=4, hidden_size=32)
    return SimpleNamespace(spatial_pool_mode=mode, spatial_pool_stride=2, vision_config=vision)


def _model(pooling):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='Llava', vision_encoder=dict(type='HFSiglipVisionEncoder', config=SIGLIP),
        projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
        llm=dict(type='HFCausalLM', config=LLM), video_pooling=pooling)).eval()


@pytest.mark.parametrize('mode', ['average', 'max'])
def test_next_video_pools_the_towers_features_then_projects(mode):
    name = 'avgpool2x2' if mode == 'average' else 'maxpool2x2'
    model = _model(dict(type=name, stage='vision'))
    frames = torch.randn(5, 3, 36, 36)  # a clip of 4 frames, then an image
    with torch.no_grad():
        got = model.encode_visuals(frames, [4, 1])
        vision = model.vision_tower(frames)
        expected_clip = model.projector(LlavaNextVideoPooler(_config(mode))(vision[:4]))
        expected_image = model.projector(vision[4])
    clip_tokens = num_visual_tokens(name, 4, 81)
    assert clip_tokens == 4 * 16 and got.shape == (clip_tokens + 81, 48)
    torch.testing.assert_close(got[:clip_tokens], expected_clip.flatten(0, 1))
    torch.testing.assert_close(got[clip_tokens:], expected_image)
    # After the projector (the LLaVA-NeXT repository's order) the tokens differ: an MLP.
    after = _model(name)
    with torch.no_grad():
        pooled_after = after.encode_visuals(frames, [4, 1])
    assert pooled_after.shape == got.shape
    assert not torch.allclose(pooled_after[:clip_tokens], got[:clip_tokens], atol=1e-3)


def test_onevision_bilinear_equals_apply_pooling():
    owner = SimpleNamespace(config=SimpleNamespace(
        vision_config=SimpleNamespace(image_size=36, patch_size=4)))
    features = torch.randn(3, 81, 48)
    expected = LlavaOnevisionModel.apply_pooling(owner, features)  # (3, 25, 48)
    got = BilinearFramePooling()(features)
    torch.testing.assert_close(got, expected.reshape(-1, 48), rtol=0, atol=0)
    assert got.shape[0] == num_visual_tokens('bilinear', 3, 81) == 3 * math.ceil(9 / 2)**2
    assert num_visual_tokens('bilinear', 8, 729) == 8 * 196  # SigLIP-so400m-384: 196 a frame


def test_bad_stage_and_position_scale():
    with pytest.raises(ValueError, match='stage must be one of'):
        build_frame_pooling(dict(type='avgpool2x2', stage='llm'))
    with pytest.raises(ValueError, match="cannot be used with a pooling of stage 'vision'"):
        MODELS.build(dict(
            type='Llava', vision_encoder=dict(type='HFSiglipVisionEncoder', config=SIGLIP),
            projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
            llm=dict(type='HFCausalLM', config=LLM),
            video_pooling=dict(type='avgpool2x2', stage='vision'), frame_position_scale=0.02))


@pytest.mark.parametrize('pooling', [
    dict(type='bilinear', newline=True), dict(type='bilinear', newline='grid'),
    dict(type='avgpool2x2', newline='one_token'), dict(type='maxpool2x2', newline='grid')])
def test_clip_newlines_count_as_the_pipeline(pooling):
    """'one_token': one image_newline after the clip; 'grid': one after each row of each
    pooled frame (the LLaVA-NeXT repository's add_token_per_grid); counts as the pipeline."""
    model = _model(pooling)
    frames = torch.randn(3, 3, 36, 36)
    with torch.no_grad():
        tokens = model.encode_visuals(frames, [3])
        plain = MODELS.build(dict(type=pooling_type_of(pooling)))
        pooled = plain(model.encode_images(frames))
    assert len(tokens) == num_visual_tokens(pooling, 3, 81)
    newline = model.image_newline
    if pooling['newline'] in (True, 'one_token'):
        assert torch.equal(tokens[:-1], pooled) and torch.equal(tokens[-1], newline)
    else:
        side = math.isqrt(len(pooled) // 3)
        rows = tokens.view(3 * side, side + 1, -1)
        assert torch.equal(rows[:, :-1].reshape(-1, rows.shape[-1]), pooled)
        assert torch.equal(rows[:, -1], newline.expand(3 * side, -1))


def pooling_type_of(pooling):
    from mmllava.structures import pooling_type
    return pooling_type(pooling)


def test_bad_newline():
    with pytest.raises(ValueError, match="newline must be"):
        build_frame_pooling(dict(type='bilinear', newline='frame'))
    with pytest.raises(ValueError, match='LLM-space'):
        build_frame_pooling(dict(type='avgpool2x2', stage='vision', newline=True))
