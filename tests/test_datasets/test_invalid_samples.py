"""Test mode: missing, empty, truncated or undecodable visuals become scored misses (stubs).

A stub is the sample packed by its own pipeline's PackLlavaInputs with one token id and no
visual, carrying the ground truth and metainfo ``invalid_sample`` (a one-line reason naming the
file); ``fail_on_invalid=True`` raises at the first one; training and real bugs are unchanged.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv.transforms import BaseTransform
from PIL import Image

from mmllava.datasets import (
    ActionListDataset,
    COCOCaptionDataset,
    InvalidSampleError,
    LlavaInstructDataset,
    POPEDataset,
    VQAv2Dataset,
    llava_collate,
)
from mmllava.datasets.invalid_samples import is_visual_error
from mmllava.models.data_preprocessor import LlavaDataPreprocessor
from mmllava.utils.video_io import write_mp4

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'eval'
TOKENIZER = str(ROOT / 'resources' / 'tiny-tokenizer' / 'tokenizer.model')
CLASSES = ['walking', 'running', 'jumping']


def pipeline(load=None, **tokenize):
    return [
        load or dict(type='LoadVisuals', num_frames=2, num_image_tokens=16),
        dict(type='CLIPResizeCrop', size=56),
        dict(type='TokenizeConversation', tokenizer=TOKENIZER, template='vicuna_v1',
             add_generation_prompt=True, **tokenize),
        dict(type='PackLlavaInputs'),
    ]


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    """good.mp4, empty.mp4 (0 bytes), cut.mp4 (its first half) and a list naming a missing
    clip too."""
    pytest.importorskip('av')
    root = tmp_path_factory.mktemp('clips')
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    write_mp4(str(root / 'good.mp4'), frames)
    data = (root / 'good.mp4').read_bytes()
    (root / 'cut.mp4').write_bytes(data[:len(data) // 2])
    (root / 'empty.mp4').write_bytes(b'')
    (root / 'list.txt').write_text('good.mp4 0\nempty.mp4 1\ncut.mp4 2\nnope.mp4 1\n')
    return root


def actions(clips, **kwargs):
    return ActionListDataset(str(clips / 'list.txt'), CLASSES, img_prefix=str(clips),
                             pipeline=pipeline(), test_mode=True, **kwargs)


def test_unreadable_clips_become_stubs_with_their_ground_truth(clips):
    ds = actions(clips)
    assert len(ds) == 4  # the missing clip stays, as a miss
    good, empty, cut, missing = (ds[i] for i in range(4))
    assert set(good['inputs']) >= {'images', 'visual_frames'}
    assert 'invalid_sample' not in good['data_samples'].metainfo
    expected = [('empty', 1, "cannot read video '" + str(clips / 'empty.mp4')),
                ('cut', 2, "cannot read video '" + str(clips / 'cut.mp4')),
                ('nope', 1, "file not found: '" + str(clips / 'nope.mp4'))]
    for stub, (sample_id, label, reason) in zip((empty, cut, missing), expected):
        assert set(stub['inputs']) == {'input_ids'} and stub['inputs']['input_ids'].tolist() == [0]
        meta = stub['data_samples'].metainfo
        assert meta['sample_id'] == sample_id and reason in meta['invalid_sample']
        assert '\n' not in meta['invalid_sample']
        assert stub['data_samples'].gt_label.tolist() == [label]
    # The list file and line lead the reason, as in the error it replaces.
    assert missing['data_samples'].metainfo['invalid_sample'].startswith(
        f'{clips / "list.txt"}:4: ')
    assert empty['data_samples'].metainfo['invalid_sample'].startswith(
        f'{clips / "list.txt"}:2: ')
    # A batch of them: the pixel values are the readable clip's frames only.
    batch = LlavaDataPreprocessor()(llava_collate([good, empty, cut, missing]))
    assert batch['inputs']['pixel_values'].shape[0] == 2  # good.mp4's 2 frames
    assert batch['inputs']['visual_frames'] == [2]


def test_fail_on_invalid_raises_the_one_line_error(clips):
    with pytest.raises(InvalidSampleError, match=str(clips / 'list.txt') + r":4: file not found: "
                       r".*nope\.mp4'\. Set fail_on_invalid=False"):
        actions(clips, fail_on_invalid=True)
    ds = actions(clips, fail_on_invalid=True, check_images=False)
    with pytest.raises(InvalidSampleError) as error:
        ds[1]
    assert str(error.value).startswith(f'{clips / "list.txt"}:2: LoadVisuals: sample \'empty\'')
    assert "cannot read video '" + str(clips / 'empty.mp4') in str(error.value)
    assert '\n' not in str(error.value)
    with pytest.raises(InvalidSampleError, match=r"video not found: '.*nope\.mp4'"):
        ds[3]


def test_training_is_unchanged(clips):
    kwargs = dict(label_map=CLASSES, img_prefix=str(clips), pipeline=pipeline())
    with pytest.raises(InvalidSampleError, match=r'list\.txt:4: file not found.*skip_invalid'):
        ActionListDataset(str(clips / 'list.txt'), **kwargs)
    ds = ActionListDataset(str(clips / 'list.txt'), check_images=False, **kwargs)
    with pytest.raises(InvalidSampleError, match='cannot read video'):
        ds[1]
    ds = ActionListDataset(str(clips / 'list.txt'), skip_invalid=True, **kwargs)
    assert len(ds) == 3 and ds.skipped[0].sample_id == 'nope'
    assert ds.prepare_data(2) is None and len(ds.skipped) == 2  # cut.mp4: skipped, counted


class _Broken(BaseTransform):
    def __init__(self, error):
        self.error = error

    def transform(self, results):
        raise self.error


@pytest.mark.parametrize('error', [TypeError('a bug in a transform'),
                                   ValueError('a transform that is not a loader')])
def test_errors_that_are_not_the_data_still_raise(clips, error):
    ds = ActionListDataset(str(clips / 'list.txt'), CLASSES, img_prefix=str(clips),
                           pipeline=pipeline()[:1] + [_Broken(error)] + pipeline()[1:],
                           test_mode=True)
    with pytest.raises(type(error), match=str(error)):
        ds[0]
    # A prompt over max_length is not an unreadable clip either.
    ds = ActionListDataset(str(clips / 'list.txt'), CLASSES, img_prefix=str(clips),
                           pipeline=pipeline(max_length=8), test_mode=True)
    with pytest.raises(InvalidSampleError, match='max_length'):
        ds[0]
    assert 'invalid_sample' in ds[3]['data_samples'].metainfo  # the missing clip: still a miss


def save_jpeg(path: Path, truncate: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])


def test_image_benchmark_truncated_and_missing_jpeg(tmp_path):
    save_jpeg(tmp_path / 'COCO_val2014_000000000001.jpg')
    save_jpeg(tmp_path / 'COCO_val2014_000000000002.jpg', truncate=True)  # 3 is missing
    ds = POPEDataset(ann_file=str(DATA / 'coco_pope_random.json'), img_prefix=str(tmp_path),
                     pipeline=pipeline(dict(type='LoadImages')))
    good, cut, missing = (ds[i] for i in range(3))
    assert good['inputs']['images'].shape[0] == 1
    for stub, qid, label, reason in ((cut, 2, 'no', 'cannot read image'),
                                     (missing, 3, 'yes', 'image file not found')):
        meta = stub['data_samples'].metainfo
        assert set(stub['inputs']) == {'input_ids'}
        assert meta['question_id'] == qid and meta['category'] == 'random'
        assert stub['data_samples'].gt_answer == label
        assert reason in meta['invalid_sample']
        assert f'COCO_val2014_00000000000{qid}.jpg' in meta['invalid_sample']
    ds = POPEDataset(ann_file=str(DATA / 'coco_pope_random.json'), img_prefix=str(tmp_path),
                     pipeline=pipeline(dict(type='LoadImages')), fail_on_invalid=True,
                     check_images=False)
    with pytest.raises(InvalidSampleError, match=r"cannot read image '.*000000000002\.jpg'"):
        ds[1]
    # Without a PackLlavaInputs step there is nothing to score a miss with: the error says so.
    ds = POPEDataset(ann_file=str(DATA / 'coco_pope_random.json'), img_prefix=str(tmp_path),
                     pipeline=[dict(type='LoadImages')])
    with pytest.raises(InvalidSampleError, match='no PackLlavaInputs'):
        ds[2]


def test_missing_at_init_kept_as_misses_in_every_dataset(tmp_path):
    save_jpeg(tmp_path / 'val2014' / 'COCO_val2014_000000000001.jpg')  # 2 is missing
    images = dict(type='LoadImages')
    vqa = VQAv2Dataset(question_file=str(DATA / 'vqav2_val_questions.json'),
                       ann_file=str(DATA / 'vqav2_val_annotations.json'),
                       img_prefix=str(tmp_path / 'val2014'), pipeline=pipeline(images),
                       test_mode=True)
    assert len(vqa) == 4
    stubs = [vqa[i] for i in (2, 3)]  # questions 1003 and 1004 ask about image 2
    assert [s['data_samples'].metainfo['question_id'] for s in stubs] == [1003, 1004]
    assert all(len(s['data_samples'].gt_answer) == 10 for s in stubs)
    assert all('image file not found' in s['data_samples'].metainfo['invalid_sample']
               for s in stubs)
    assert 'invalid_sample' not in vqa[0]['data_samples'].metainfo
    coco = COCOCaptionDataset(ann_file=str(DATA / 'coco_karpathy_val.json'),
                              img_prefix=str(tmp_path), pipeline=pipeline(images),
                              test_mode=True)
    assert len(coco) == 2
    stub = coco[1]
    assert 'invalid_sample' in stub['data_samples'].metainfo
    assert stub['data_samples'].gt_caption == ['a cat sits down', 'a cat on a mat']
    records = [dict(id='a', image='val2014/COCO_val2014_000000000001.jpg',
                    conversations=[dict(value='<image>\nWhat is it?', **{'from': 'human'})]),
               dict(id='b', image='val2014/COCO_val2014_000000000002.jpg',
                    conversations=[dict(value='<image>\nWhat is it?', **{'from': 'human'})])]
    import json
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    llava = LlavaInstructDataset(str(tmp_path / 'ann.json'), img_prefix=str(tmp_path),
                                 pipeline=pipeline(images), test_mode=True)
    assert len(llava) == 2 and 'invalid_sample' in llava[1]['data_samples'].metainfo
    assert torch.equal(llava[1]['inputs']['input_ids'], torch.tensor([0]))
    with pytest.raises(InvalidSampleError, match="sample 'b'.*image file not found"):
        LlavaInstructDataset(str(tmp_path / 'ann.json'), img_prefix=str(tmp_path),
                             test_mode=True, fail_on_invalid=True)


def test_config_errors_stop_a_test_run_they_are_not_misses(clips):
    """Only a file that cannot be read is a miss: a pipeline that cannot count a clip's tokens
    (LoadImages without num_image_tokens) raises in test mode too, before decoding."""
    ds = ActionListDataset(str(clips / 'list.txt'), CLASSES, img_prefix=str(clips),
                           pipeline=pipeline(dict(type='LoadImages')), test_mode=True)
    with pytest.raises(ValueError, match='needs num_image_tokens') as info:
        ds[0]
    assert not is_visual_error(info.value)
    good = actions(clips)[0]  # the same clip with a loader that counts it
    assert 'invalid_sample' not in good['data_samples'].metainfo
