"""Tests of PackLlavaInputs."""
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample

from mmllava.datasets.transforms.formatting import PackLlavaInputs
from mmllava.registry import TRANSFORMS


def _sample(**kwargs):
    rng = np.random.default_rng(0)
    results = dict(
        sample_id='s1', prompt='USER: <image>\nq ASSISTANT:', question='q',
        input_ids=[1, 319, -200, 29871], labels=np.array([-100, -100, -100, 29871]),
        images=[rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) for _ in range(2)],
        img_paths=['a.jpg', None], ori_shapes=[(8, 10), (4, 5)], img_shapes=[(4, 5), (4, 5)],
        gt_answer='yes', gt_label=3, unrelated='dropped')
    results.update(kwargs)
    return results


def test_pack_full_sample():
    results = _sample()
    packed = TRANSFORMS.build(dict(type='PackLlavaInputs'))(dict(results))
    inputs, data_sample = packed['inputs'], packed['data_samples']
    assert set(inputs) == {'input_ids', 'labels', 'images'}
    assert inputs['input_ids'].dtype == torch.long
    assert inputs['input_ids'].tolist() == [1, 319, -200, 29871]
    assert inputs['labels'].dtype == torch.long
    assert inputs['labels'].tolist() == [-100, -100, -100, 29871]
    images = inputs['images']
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 4, 5)
    assert images.is_contiguous()
    for k in range(2):
        np.testing.assert_array_equal(images[k].permute(1, 2, 0).numpy(), results['images'][k])

    assert isinstance(data_sample, DataSample)
    assert set(data_sample.metainfo_keys()) == {
        'sample_id', 'prompt', 'question', 'img_paths', 'ori_shapes', 'img_shapes'}
    assert data_sample.sample_id == 's1' and data_sample.img_paths == ['a.jpg', None]
    assert data_sample.gt_answer == 'yes'
    assert torch.equal(data_sample.gt_label, torch.tensor([3]))
    assert 'gt_caption' not in data_sample and 'unrelated' not in data_sample


def test_pack_text_only_omits_images():
    for images in ([], None):
        packed = PackLlavaInputs()(_sample(images=images, labels=None))
        assert set(packed['inputs']) == {'input_ids'}
    packed = PackLlavaInputs()({'input_ids': torch.tensor([1, 2])})
    assert packed['inputs']['input_ids'].tolist() == [1, 2]
    assert packed['data_samples'].metainfo_keys() == []


def test_pack_custom_keys():
    packed = PackLlavaInputs(meta_keys=('question',), gt_keys=('gt_caption',))(
        _sample(gt_caption=['a cat', 'a cat on a mat']))
    assert packed['data_samples'].metainfo_keys() == ['question']
    assert packed['data_samples'].gt_caption == ['a cat', 'a cat on a mat']


def test_pack_errors_name_the_sample():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (4, 5, 3), dtype=np.uint8),
              rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)]
    with pytest.raises(ValueError, match=r"'s1'.*same size"):
        PackLlavaInputs()(_sample(images=images))
    with pytest.raises(TypeError, match=r"'s1'.*uint8"):
        PackLlavaInputs()(_sample(images=[np.zeros((4, 5, 3), np.float32)]))
    with pytest.raises(KeyError, match='s2'):
        PackLlavaInputs()({'sample_id': 's2'})
    with pytest.raises(ValueError, match='differ in length'):
        PackLlavaInputs()(_sample(labels=[1, 2]))
    with pytest.raises(TypeError, match='integers'):
        PackLlavaInputs()(_sample(input_ids=[1.5, 2.0], labels=None))


def test_pack_collates_in_data_preprocessor_order():
    # What the data preprocessor gets from two samples: concatenating images keeps the order.
    a = PackLlavaInputs()(_sample())['inputs']['images']
    b = PackLlavaInputs()(_sample(images=_sample()['images'][:1]))['inputs']['images']
    assert torch.cat([a, b]).shape == (3, 3, 4, 5)
