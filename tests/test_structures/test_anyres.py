"""Anyres geometry against transformers' LLaVA-NeXT and OneVision processors, many sizes."""
import numpy as np
import pytest

from mmllava.structures.anyres import (
    anyres_grid,
    anyres_num_tokens,
    select_best_resolution,
    unpadded_size,
)

NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # LLaVA-1.6
OV_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]  # OneVision


def sizes(n=300, seed=0):
    """Wide, tall, square, tiny and huge (height, width) pairs, plus random ones."""
    fixed = [(336, 336), (1, 1), (10, 3000), (3000, 10), (480, 640), (640, 480), (672, 1008),
             (2304, 2304), (5000, 4000), (337, 673), (384, 1152), (17, 23)]
    rng = np.random.default_rng(seed)
    return fixed + [tuple(int(v) for v in rng.integers(1, 4000, 2)) for _ in range(n)]


def _processor(cls, **attrs):
    """A transformers processor with only the attributes its token count reads (no tokenizer
    is needed for the count, and none can be downloaded here)."""
    proc = object.__new__(cls)
    for key, value in attrs.items():
        setattr(proc, key, value)
    return proc


@pytest.mark.parametrize('pinpoints', [NEXT_PINPOINTS, OV_PINPOINTS])
def test_best_resolution_is_transformers(pinpoints):
    from transformers.image_processing_utils import select_best_resolution as reference
    for size in sizes():
        assert select_best_resolution(size, pinpoints) == tuple(reference(size, pinpoints)), size


def test_llava_next_token_counts_are_the_processors():
    from types import SimpleNamespace

    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor
    for extra, strategy_base in [(1, 577), (0, 576)]:  # CLIP with / without its CLS token
        proc = _processor(LlavaNextProcessor, patch_size=14, num_additional_image_tokens=extra,
                          image_processor=SimpleNamespace(image_grid_pinpoints=NEXT_PINPOINTS))
        for h, w in sizes():
            want = proc._get_number_of_features(h, w, 336, 336)
            got = anyres_num_tokens((h, w), NEXT_PINPOINTS, 336, 24, base_tokens=strategy_base)
            assert got == want, (h, w)


def test_onevision_token_counts_are_the_processors():
    from types import SimpleNamespace

    from transformers.models.llava_onevision.processing_llava_onevision import (
        LlavaOnevisionProcessor,
    )
    proc = _processor(LlavaOnevisionProcessor, num_image_tokens=729,
                      vision_aspect_ratio='anyres_max_9',
                      image_processor=SimpleNamespace(image_grid_pinpoints=OV_PINPOINTS))
    for h, w in sizes():
        want = proc._get_number_of_features(h, w, 384, 384)
        assert anyres_num_tokens((h, w), OV_PINPOINTS, 384, 27, max_num_tiles=9) == want, (h, w)


def test_grid_and_unpad_by_hand():
    assert anyres_grid((480, 640), NEXT_PINPOINTS, 336) == (2, 2)  # 672x672 keeps the most
    assert anyres_grid((300, 1000), NEXT_PINPOINTS, 336) == (1, 3)
    # A 4:3 image on a 48x48 map: 36 rows of it, 6 of padding above and below.
    assert unpadded_size((480, 640), (48, 48)) == (36, 48)
    assert unpadded_size((640, 480), (48, 48)) == (48, 36)
    with pytest.raises(ValueError, match='positive'):
        select_best_resolution((0, 5), NEXT_PINPOINTS)
    with pytest.raises(ValueError, match='empty'):
        select_best_resolution((5, 5), [])
