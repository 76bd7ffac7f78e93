"""The anyres feature merge equals transformers' pack_image_features (LLaVA-NeXT and
OneVision) for many image sizes, and has as many tokens as the pipeline counts."""
import itertools
from types import SimpleNamespace

import pytest
import torch
from transformers.models.llava_next.modeling_llava_next import LlavaNextModel
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

from mmllava.models.anyres import pack_anyres_features
from mmllava.structures.anyres import anyres_grid, anyres_num_tokens

TILE, PATCH = 56, 14  # 4 patches a tile side, small
NEXT_PINPOINTS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]  # LLaVA-1.6's / 6
OV_PINPOINTS = [[56 * i, 56 * j] for i in range(1, 7) for j in range(1, 7)]  # (1x1)..(6x6)
SIZES = [(h, w) for h, w in itertools.product([7, 30, 56, 61, 100, 224, 333], repeat=2)]


def _reference(cls, pinpoints, **extra):
    config = SimpleNamespace(vision_config=SimpleNamespace(image_size=TILE, patch_size=PATCH),
                             image_grid_pinpoints=pinpoints)
    owner = SimpleNamespace(config=config)
    return lambda feats, size, newline: cls.pack_image_features(
        owner, [feats], torch.tensor([size]), image_newline=newline, **extra)[0][0]


@pytest.mark.parametrize('family', ['next', 'onevision'])
def test_merge_equals_transformers(family):
    torch.manual_seed(0)
    channels, side = 8, TILE // PATCH
    newline = torch.randn(channels)
    if family == 'next':
        pinpoints, max_tiles = NEXT_PINPOINTS, None
        reference = _reference(LlavaNextModel, pinpoints,
                               vision_feature_select_strategy='default')
    else:
        pinpoints, max_tiles = OV_PINPOINTS, 9
        reference = _reference(LlavaOnevisionModel, pinpoints,
                               vision_aspect_ratio='anyres_max_9')
    downsampled = 0
    for size in SIZES:
        rows, cols = anyres_grid(size, pinpoints, TILE)
        feats = torch.randn(1 + rows * cols, side * side, channels)
        got = pack_anyres_features(feats, size, pinpoints, TILE, newline, max_tiles)
        torch.testing.assert_close(got, reference(feats, list(size), newline), rtol=0, atol=0)
        assert got.shape[0] == anyres_num_tokens(size, pinpoints, TILE, side,
                                                 max_num_tiles=max_tiles), size
        downsampled += max_tiles is not None and rows * cols > max_tiles
    assert family == 'next' or downsampled > 0  # the anyres_max branch ran


def test_wrong_feature_count_is_refused():
    with pytest.raises(ValueError, match=r'needs the base view and 1x2 tiles'):
        pack_anyres_features(torch.zeros(2, 16, 4), (56, 112), NEXT_PINPOINTS, TILE)
    # Without a newline, each row is just the unpadded patches.
    out = pack_anyres_features(torch.zeros(3, 16, 4), (56, 112), NEXT_PINPOINTS, TILE)
    assert out.shape == (16 + 4 * 8, 4)
