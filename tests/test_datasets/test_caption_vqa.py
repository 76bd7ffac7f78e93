"""COCO caption (Karpathy JSON) and VQAv2 (official files) as LLaVA conversations."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmllava.datasets import COCOCaptionDataset, VQAv2Dataset
from mmllava.datasets.vqav2 import SHORT_ANSWER_PROMPT, most_common_answer


def image(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


@pytest.fixture
def coco(tmp_path):
    for name in ['COCO_val2014_000000391895.jpg', 'COCO_val2014_000000522418.jpg']:
        image(tmp_path / 'val2014' / name)
    train = [dict(image='val2014/COCO_val2014_000000391895.jpg', caption='A man rides.',
                  image_id='coco_391895'),
             dict(image='val2014/COCO_val2014_000000391895.jpg', caption='A biker.',
                  image_id='coco_391895'),
             dict(image='val2014/COCO_val2014_000000522418.jpg', caption='A woman cuts cake.',
                  image_id='coco_522418')]
    test = [dict(image='val2014/COCO_val2014_000000391895.jpg',
                 caption=['A man rides.', 'A biker.'])]
    (tmp_path / 'train.json').write_text(json.dumps(train))
    (tmp_path / 'test.json').write_text(json.dumps(test))
    return tmp_path


def test_coco_caption_train_and_test(coco):
    ds = COCOCaptionDataset(ann_file='train.json', data_root=str(coco))
    assert len(ds) == 3
    info = ds.get_data_info(1)
    assert info['sample_id'] == '391895_1' and info['image_id'] == 391895
    assert info['images'] == [str(coco / 'val2014' / 'COCO_val2014_000000391895.jpg')]
    assert info['messages'][0]['content'].startswith('<image>\n')
    assert info['messages'][1] == dict(role='assistant', content='A biker.')
    assert all(n > 0 for n in ds.modality_lengths)
    test = COCOCaptionDataset(ann_file='test.json', data_root=str(coco), test_mode=True)
    assert len(test) == 1
    info = test.get_data_info(0)
    assert info['gt_caption'] == ['A man rides.', 'A biker.']
    assert [m['role'] for m in info['messages']] == ['user']


def test_coco_caption_missing_image(coco):
    (coco / 'val2014' / 'COCO_val2014_000000522418.jpg').unlink()
    with pytest.raises(ValueError, match='522418.*train.json.*COCO_val2014_000000522418'):
        COCOCaptionDataset(ann_file='train.json', data_root=str(coco))
    ds = COCOCaptionDataset(ann_file='train.json', data_root=str(coco), skip_invalid=True)
    assert len(ds) == 2 and [s.reason for s in ds.skipped] == ['missing_image']


@pytest.fixture
def vqa(tmp_path):
    image(tmp_path / 'train2014' / 'COCO_train2014_000000000009.jpg')
    questions = dict(data_subtype='train2014', questions=[
        dict(image_id=9, question='What colour is it?', question_id=9000),
        dict(image_id=9, question='How many?', question_id=9001)])
    answers = ['red'] * 4 + ['blue'] * 4 + ['green'] * 2
    annotations = dict(annotations=[
        dict(question_id=9000, image_id=9, answer_type='other', multiple_choice_answer='blue',
             answers=[dict(answer=a, answer_id=i) for i, a in enumerate(answers)]),
        dict(question_id=9001, image_id=9, answer_type='number', multiple_choice_answer='2',
             answers=[dict(answer=a, answer_id=i) for i, a in enumerate(['2'] * 9 + ['3'])])])
    (tmp_path / 'q.json').write_text(json.dumps(questions))
    (tmp_path / 'a.json').write_text(json.dumps(annotations))
    return tmp_path


def test_most_common_answer():
    assert most_common_answer(['a', 'b', 'b']) == 'b'
    assert most_common_answer(['a', 'b'], preferred='b') == 'b'
    assert most_common_answer(['a', 'b'], preferred='c') == 'a'


def test_vqav2_train_and_test(vqa):
    ds = VQAv2Dataset(question_file='q.json', ann_file='a.json', data_root=str(vqa),
                      img_prefix='train2014')
    assert len(ds) == 2
    info = ds.get_data_info(0)
    assert info['sample_id'] == 9000 and info['question_id'] == 9000
    assert info['images'] == [str(vqa / 'train2014' / 'COCO_train2014_000000000009.jpg')]
    assert info['messages'] == [
        dict(role='user', content=f'<image>\nWhat colour is it?\n{SHORT_ANSWER_PROMPT}'),
        dict(role='assistant', content='blue')]  # a tie: the official most common answer
    assert ds.get_data_info(1)['messages'][1]['content'] == '2'
    test = VQAv2Dataset(question_file='q.json', ann_file='a.json', data_root=str(vqa),
                        img_prefix='train2014', test_mode=True)
    info = test.get_data_info(0)
    assert len(info['gt_answer']) == 10 and info['answer_type'] == 'other'
    assert [m['role'] for m in info['messages']] == ['user']
    no_answers = VQAv2Dataset(question_file='q.json', data_root=str(vqa),
                              img_prefix='train2014', test_mode=True)
    assert 'gt_answer' not in no_answers.get_data_info(1)


def test_vqav2_missing_image(vqa):
    with pytest.raises(ValueError, match='9000.*COCO_val2014_000000000009'):
        VQAv2Dataset(question_file='q.json', ann_file='a.json', data_root=str(vqa),
                     img_prefix='train2014',
                     img_name_format='COCO_val2014_{image_id:012d}.jpg')
