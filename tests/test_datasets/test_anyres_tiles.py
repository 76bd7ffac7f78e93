"""Anyres tiles equal transformers' LLaVA-NeXT and OneVision PIL processors, pixel for pixel,
and a sample's frames and placeholder counts follow them."""
import itertools

import numpy as np
import pytest
import torch
from transformers.models.llava_next.image_processing_pil_llava_next import (
    LlavaNextImageProcessorPil,
)
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from mmllava.datasets.transforms import AnyresTiles, CLIPResizeCrop, anyres_tiles
from mmllava.models.data_preprocessor import normalize_pixels
from mmllava.structures import CLIP_MEAN, CLIP_STD
from mmllava.structures.anyres import anyres_num_tokens

TILE = 56
NEXT_PINPOINTS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]  # LLaVA-1.6's / 6
OV_PINPOINTS = [[56 * i, 56 * j] for i in range(1, 4) for j in range(1, 4)]
SIZES = list(itertools.product([9, 40, 56, 77, 150, 301], repeat=2))


@pytest.mark.parametrize('family', ['next', 'onevision'])
def test_tiles_equal_transformers_processors(family):
    if family == 'next':
        pinpoints = NEXT_PINPOINTS
        processor = LlavaNextImageProcessorPil(size={'shortest_edge': TILE},
                                               crop_size={'height': TILE, 'width': TILE},
                                               image_grid_pinpoints=pinpoints)
    else:
        pinpoints = OV_PINPOINTS
        processor = LlavaOnevisionImageProcessorPil(size={'height': TILE, 'width': TILE},
                                                    image_grid_pinpoints=pinpoints,
                                                    image_mean=CLIP_MEAN, image_std=CLIP_STD)
    rng = np.random.RandomState(0)
    tiles_seen = set()
    for height, width in SIZES:
        image = rng.randint(0, 256, (height, width, 3), dtype=np.uint8)
        expected = processor(images=image, return_tensors='pt')
        frames = anyres_tiles(image, pinpoints, TILE)
        tiles_seen.add(len(frames) - 1)
        ours = normalize_pixels(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
        torch.testing.assert_close(ours, expected['pixel_values'][0], rtol=0, atol=1e-6)
        assert expected['image_sizes'][0].tolist() == [height, width]
    assert len(tiles_seen) >= 3  # grids of several sizes were met


def test_sample_frames_and_counts():
    rng = np.random.RandomState(1)
    wide = rng.randint(0, 256, (40, 150, 3), dtype=np.uint8)
    clip = [rng.randint(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(2)]
    results = dict(images=[wide] + clip, visual_kinds=['image', 'video'], visual_frames=[1, 2],
                   num_visual_tokens=[16, 10], img_paths=['w.jpg', 'c.mp4', 'c.mp4'])
    out = AnyresTiles(NEXT_PINPOINTS, TILE, patches_per_side=4).transform(results)
    assert out['visual_frames'] == [4, 2]  # base + 1x3 tiles, the clip as it was
    assert out['image_sizes'] == [(40, 150), (0, 0)]
    assert out['num_visual_tokens'] == [anyres_num_tokens((40, 150), NEXT_PINPOINTS, TILE, 4),
                                        10]
    assert out['img_paths'] == ['w.jpg'] * 4 + ['c.mp4'] * 2
    assert all(f.shape == (56, 56, 3) for f in out['images'])
    # The CLIP resize-and-crop after it is the identity on the tiles.
    tiles = [f.copy() for f in out['images']]
    resized = CLIPResizeCrop(TILE).transform(dict(images=out['images']))['images']
    assert all((a == b).all() for a, b in zip(tiles, resized))


def test_bad_pinpoints_and_missing_keys():
    with pytest.raises(ValueError, match='multiple of tile_size 56'):
        AnyresTiles([[56, 100]], TILE, 4)
    with pytest.raises(KeyError, match='run LoadVisuals first'):
        AnyresTiles(NEXT_PINPOINTS, TILE, 4).transform(dict(images=[]))


def test_onevision_several_images_are_padded_not_tiled():
    """A sample of several images: each padded to a square of the SigLIP mean and resized, as
    transformers' OneVision processor does for batch_num_images > 1; 1 frame, base + newline."""
    processor = LlavaOnevisionImageProcessorPil(size={'height': TILE, 'width': TILE},
                                                image_grid_pinpoints=OV_PINPOINTS,
                                                image_mean=[0.5] * 3, image_std=[0.5] * 3)
    rng = np.random.RandomState(3)
    images = [rng.randint(0, 256, (40, 150, 3), dtype=np.uint8),
              rng.randint(0, 256, (77, 30, 3), dtype=np.uint8)]
    expected = processor(images=[images], return_tensors='pt')
    step = AnyresTiles(anyres=dict(image_grid_pinpoints=OV_PINPOINTS, tile_size=TILE,
                                   patches_per_side=4), multi_image='pad')
    out = step.transform(dict(images=list(images), visual_kinds=['image', 'image'],
                              visual_frames=[1, 1]))
    assert out['visual_frames'] == [1, 1] and out['image_sizes'] == [(0, 0), (0, 0)]
    assert out['num_visual_tokens'] == [17, 17]
    ours = normalize_pixels(torch.from_numpy(np.stack(out['images'])).permute(0, 3, 1, 2),
                            [0.5] * 3, [0.5] * 3)
    theirs = expected['pixel_values'][:, 0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # One image alone is tiled, as the processor does for batch_num_images == 1.
    single = step.transform(dict(images=[images[0]], visual_kinds=['image'], visual_frames=[1]))
    assert single['visual_frames'][0] > 1 and single['image_sizes'] == [(40, 150)]


def test_anyres_dict_and_missing_fields():
    with pytest.raises(ValueError, match='needs tile_size'):
        AnyresTiles(image_grid_pinpoints=NEXT_PINPOINTS, patches_per_side=4)
    with pytest.raises(ValueError, match='unknown field'):
        AnyresTiles(anyres=dict(image_grid_pinpoints=NEXT_PINPOINTS, tile_size=TILE,
                                patches_per_side=4, side=3))
    step = AnyresTiles(tile_size=TILE, anyres=dict(image_grid_pinpoints=NEXT_PINPOINTS,
                                                   tile_size=999, patches_per_side=4))
    assert step.tile_size == TILE  # an explicit field wins over the dict
