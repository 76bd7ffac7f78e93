"""Clips in LLaVA: frame pooling, frame positions, mixed image + clip end to end."""
import numpy as np
import pytest
import torch
from fixtures_llava import TINY_CONFIG
from mmengine.config import Config
from mmengine.dataset import Compose

from mmllava.models import IMAGE_TOKEN_INDEX, build_frame_pooling, frame_position_embedding
from mmllava.registry import MODELS, TRANSFORMS

CONFIG = TINY_CONFIG
N_TOK = 16  # the tiny config: 56 px / 14 px patches = a 4x4 grid per frame


def test_avgpool2x2_by_hand():
    grid = torch.arange(16.).reshape(1, 16, 1)  # one frame, 4x4 grid, one channel
    out = build_frame_pooling('avgpool2x2')(grid)
    # Top-left 2x2 block: (0 + 1 + 4 + 5) / 4 = 2.5, and so on row-major.
    assert out[:, 0].tolist() == [2.5, 4.5, 10.5, 12.5]
    pool = build_frame_pooling(dict(type='avgpool2x2'))
    assert pool(torch.randn(3, 576, 8)).shape == (3 * 144, 8)
    assert pool.num_visual_tokens(32, 576) == 32 * 144
    with pytest.raises(ValueError, match='square token grid'):
        pool.num_visual_tokens(2, 577)


def test_spatial_temporal_and_none_by_hand():
    frames = torch.arange(2 * 3 * 1.).reshape(2, 3, 1)  # T=2 frames of N=3 tokens
    out = build_frame_pooling('spatial_temporal')(frames)
    # Per-frame spatial means (T), then per-token temporal means (N).
    assert out[:, 0].tolist() == [1.0, 4.0, 1.5, 2.5, 3.5]
    assert build_frame_pooling("spatial_temporal").num_visual_tokens(8, 576) == 584
    none = build_frame_pooling(None)
    assert none(frames)[:, 0].tolist() == list(range(6)) and none.num_visual_tokens(8, 16) == 128


def test_frame_position_embedding():
    pe = frame_position_embedding(3, 6)
    assert pe.shape == (3, 6)
    torch.testing.assert_close(pe[0], torch.tensor([0., 1., 0., 1., 0., 1.]))
    assert pe[1, 0] == pytest.approx(np.sin(1.0)) and pe[1, 1] == pytest.approx(np.cos(1.0))


@pytest.fixture(scope='module')
def tiny():
    cfg = Config.fromfile(str(CONFIG))
    torch.manual_seed(0)
    model_cfg = dict(cfg.model, video_pooling='avgpool2x2', frame_position_scale=0.5)
    model = MODELS.build(model_cfg).eval()
    pipeline = Compose([TRANSFORMS.build(step) for step in [
        dict(type='LoadVisuals', num_frames=4, num_image_tokens=N_TOK,
             video_pooling='avgpool2x2'),
        dict(type='PadToSquare', background=(122, 116, 104)),
        dict(type='CLIPResizeCrop', size=56),
        dict(type='TokenizeConversation', tokenizer=cfg.tokenizer, template='vicuna_v1',
             add_generation_prompt=True),
        dict(type='PackLlavaInputs'),
    ]])
    return model, pipeline


def clip(seed, t=6):
    return np.random.default_rng(seed).integers(0, 256, (t, 40, 50, 3), dtype=np.uint8)


def run(model, pipeline, **sample):
    packed = pipeline(dict(sample))
    data = model.data_preprocessor(dict(inputs=[packed['inputs']],
                                        data_samples=[packed['data_samples']]))
    inputs = data['inputs']
    with torch.no_grad():
        embeds = model.embed_inputs(inputs['input_ids'], inputs['pixel_values'],
                                    inputs.get('visual_frames'))
    return inputs, embeds


def test_image_and_clip_end_to_end(tiny):
    model, pipeline = tiny
    image = np.random.default_rng(1).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    msgs = [dict(role='user', content='<image>\nWhat does the clip <video> show?')]
    inputs, embeds = run(model, pipeline, messages=msgs, images=[image], videos=[clip(2)])
    assert inputs['visual_frames'] == [1, 4]
    assert inputs['pixel_values'].shape == (5, 3, 56, 56)
    ids = inputs['input_ids'][0]
    # The image keeps 16 tokens; 4 frames pooled 2x2 give 4 x 4 = 16 more.
    assert int((ids == IMAGE_TOKEN_INDEX).sum()) == N_TOK + 4 * 4
    # Scatter: the image's slots hold its plain features, the clip's the pooled frames.
    slots = (ids == IMAGE_TOKEN_INDEX).nonzero()[:, 0]
    with torch.no_grad():
        feats = model.encode_images(inputs['pixel_values'])
    torch.testing.assert_close(embeds[0, slots[:N_TOK]], feats[0])
    pe = frame_position_embedding(4, feats.shape[-1])[:, None]
    expected = model.video_pooling(feats[1:] + 0.5 * pe)
    torch.testing.assert_close(embeds[0, slots[N_TOK:]], expected)
    # The model runs on it (tensor mode, with the visual frames carried).
    with torch.no_grad():
        logits = model(inputs, mode='tensor')
    assert logits.shape[:2] == ids[None].shape


def test_frame_order_changes_embeddings(tiny):
    model, pipeline = tiny
    msgs = [dict(role='user', content='<video> What happens?')]
    frames = clip(3, t=4)
    swapped = frames[[1, 0, 2, 3]]
    _, a = run(model, pipeline, messages=msgs, videos=[frames])
    _, b = run(model, pipeline, messages=msgs, videos=[swapped])
    assert not torch.allclose(a, b)
    # With spatial_temporal, the per-frame tokens follow the order (and carry positions);
    # the temporal means stay order-blind: the mean of added positions is a constant.
    inputs, _ = run(model, pipeline, messages=msgs, videos=[frames])
    px = inputs['pixel_values']
    old_pool = model.video_pooling
    try:
        model.video_pooling = build_frame_pooling('spatial_temporal')
        with torch.no_grad():
            fwd = model.encode_visuals(px, [4])
            rev = model.encode_visuals(px[[1, 0, 2, 3]], [4])
    finally:
        model.video_pooling = old_pool
    assert fwd.shape == (4 + N_TOK, 128)
    assert not torch.allclose(fwd[:4], rev[:4])
    torch.testing.assert_close(fwd[4:], rev[4:])


def test_image_only_unchanged(tiny):
    model, pipeline = tiny
    image = np.random.default_rng(4).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    msgs = [dict(role='user', content='<image> What is it?')]
    inputs, embeds = run(model, pipeline, messages=msgs, images=[image])
    assert inputs['visual_frames'] == [1]
    with torch.no_grad():
        plain = model.embed_inputs(inputs['input_ids'], inputs['pixel_values'])
    torch.testing.assert_close(embeds, plain, rtol=0, atol=0)


def test_frame_count_mismatch_raises(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match='do not match the 3 frames'):
        model.encode_visuals(torch.zeros(3, 3, 56, 56), [1, 1])


def test_custom_pooling_counts_its_own_tokens():
    """A pooling registered by a user counts its tokens itself, for the loader and the model
    alike; a subclass of a built-in one that does not, counts as its parent."""
    import torch

    from mmllava.datasets.transforms import LoadVisuals
    from mmllava.models import AvgPool2x2FramePooling, NoFramePooling
    from mmllava.registry import MODELS
    from mmllava.structures import num_visual_tokens

    class FirstFramePooling(NoFramePooling):
        def num_visual_tokens(self, num_frames, num_image_tokens):
            return num_image_tokens  # the first frame's, however many frames

        def __call__(self, frames):
            return frames[0]

    class MyAvgPool(AvgPool2x2FramePooling):
        pass

    MODELS.register_module(name='FirstFramePooling', module=FirstFramePooling, force=True)
    frames = torch.zeros(4, 16, 3)
    assert num_visual_tokens('FirstFramePooling', 4, 16) == 16  # not 4 x 16
    assert FirstFramePooling()(frames).shape[0] == 16
    assert num_visual_tokens(MyAvgPool(), 4, 16) == 16 == MyAvgPool().num_visual_tokens(4, 16)
    loader = LoadVisuals(num_frames=4, num_image_tokens=16, video_pooling='FirstFramePooling')
    assert loader._tokens(4) == 16 and loader._tokens(1) == 16
    with pytest.raises(ValueError, match="Unknown frame pooling 'NoSuchPooling'"):
        LoadVisuals(video_pooling='NoSuchPooling')
