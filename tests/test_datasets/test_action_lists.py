"""mmaction2 action lists: readers, questions, ActionListDataset through the real pipeline."""
import os.path as osp
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from mmllava.conversation import IMAGE_TOKEN_INDEX
from mmllava.datasets import (
    MOCAP_ACTION_CLASSES,
    MOCAP_ACTION_QUESTION,
    OPEN_QUESTION,
    ActionListDataset,
    ActionListEntry,
    InvalidSampleError,
    action_question,
    closed_set_question,
    llava_action_sample,
    read_action_list,
)
from mmllava.datasets.action_lists import read_label_map
from mmllava.registry import DATASETS
from mmllava.utils.video_io import write_mp4, write_rawframes

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = str(ROOT / 'resources' / 'tiny-tokenizer' / 'tokenizer.model')
CLASSES = ['walking', 'running', 'jumping']
N_TOK = 16  # the tiny CLIP's 4 x 4 patches; avgpool2x2 leaves 4 a frame


def write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def clip(seed, t):
    """A clip whose frames differ (frame i has brightness 20 * i), so sampling is visible."""
    frames = np.random.default_rng(seed).integers(0, 40, (t, 32, 32, 3), dtype=np.uint8)
    return frames + (20 * np.arange(t, dtype=np.uint8))[:, None, None, None]


def pipeline(num_frames=4):
    return [
        dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=N_TOK,
             video_pooling='avgpool2x2'),
        dict(type='CLIPResizeCrop', size=56),
        dict(type='TokenizeConversation', tokenizer=TOKENIZER, template='vicuna_v1',
             max_length=512),
        dict(type='PackLlavaInputs'),
    ]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """videos/ (6-frame mp4), rawframes/ (a 6-frame and a 3-frame folder), images/, lists."""
    pytest.importorskip('av')
    root = tmp_path_factory.mktemp('actions')
    (root / 'videos').mkdir()
    write_mp4(str(root / 'videos' / 'a.mp4'), clip(0, 6))
    write_mp4(str(root / 'videos' / 'b.mp4'), clip(1, 6))
    write_rawframes(str(root / 'rawframes' / 'a'), clip(0, 6))
    write_rawframes(str(root / 'rawframes' / 'short'), clip(2, 3))
    (root / 'images').mkdir()
    from PIL import Image
    Image.fromarray(clip(3, 1)[0]).save(root / 'images' / 'p.jpg')
    write(root / 'label_map.txt', '\n'.join(CLASSES) + '\n')
    write(root / 'train_list_videos.txt', 'a.mp4 1\n\nb.mp4 2\n')  # a blank line is skipped
    write(root / 'train_list_rawframes.txt', 'a 6 0\nshort 3 2\n')
    write(root / 'train_list_images.txt', 'p.jpg 2\n')
    return root


# ------------------------------------------------------------------ readers and questions
def test_closed_question_is_the_mocap_question():
    assert closed_set_question(MOCAP_ACTION_CLASSES) == MOCAP_ACTION_QUESTION
    assert action_question(CLASSES) == ('What is the person doing? Answer with one of: '
                                        'walking, running, jumping.')
    assert action_question(CLASSES, 'open') == OPEN_QUESTION
    assert action_question(CLASSES, 'open', ' What happens? ') == 'What happens?'
    assert action_question(CLASSES, 'closed', 'Which action?').startswith(
        'Which action? Answer with one of: walking,')
    with pytest.raises(ValueError, match='question_mode'):
        action_question(CLASSES, 'multiple')
    with pytest.raises(ValueError, match='empty'):
        action_question(CLASSES, 'open', '  ')


def test_read_lists(data):
    videos = read_action_list(str(data / 'train_list_videos.txt'), 'videos', 3)
    assert videos == [ActionListEntry('a.mp4', 1, None, 1), ActionListEntry('b.mp4', 2, None, 3)]
    frames = read_action_list(str(data / 'train_list_rawframes.txt'), 'rawframes', 3)
    assert frames == [ActionListEntry('a', 0, 6, 1), ActionListEntry('short', 2, 3, 2)]
    assert read_label_map(str(data / 'label_map.txt')) == CLASSES


@pytest.mark.parametrize('fmt,text,message', [
    ('videos', 'a.mp4 0\nb.mp4\n', r'list\.txt:2: expected "path label" \(2 fields\)'),
    ('videos', 'a.mp4 0\nb.mp4 1 2\n', r'list\.txt:2: expected "path label"'),
    ('rawframes', 'a 6 0\nb 0\n', r'list\.txt:2: expected "dir total_frames label"'),
    ('videos', 'a.mp4 zero\n', r"list\.txt:1: label 'zero' is not an integer"),
    ('rawframes', 'a six 0\n', r"list\.txt:1: total_frames 'six' is not an integer"),
    ('rawframes', 'a 0 0\n', r'list\.txt:1: total_frames must be positive'),
    ('images', 'a.jpg 0\n\n\nb.jpg 3\n',
     r'list\.txt:4: label 3 is outside the label map lm\.txt \(3 classes\)'),
    ('videos', 'a.mp4 -1\n', r'list\.txt:1: label -1 is outside the label map'),
    ('videos', '\n  \n', r'list\.txt: the action list has no samples'),
])
def test_bad_lists_name_file_and_line(tmp_path, fmt, text, message):
    path = write(tmp_path / 'list.txt', text)
    with pytest.raises(ValueError, match=message):
        read_action_list(path, fmt, 3, 'lm.txt')


@pytest.mark.parametrize('text,message', [
    ('', r'lm\.txt: the label map is empty'),
    ('\n\n', r'lm\.txt: the label map is empty'),
    ('walking\n\nrunning\n', r'lm\.txt:2: blank line in the label map'),
    ('walking\nrunning\nwalking\n', r"lm\.txt:3: class 'walking' is listed twice \(first on "
     r'line 1\)'),
])
def test_bad_label_maps(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_label_map(write(tmp_path / 'lm.txt', text))


def test_llava_action_sample_formats():
    entry = ActionListEntry('run/v_01.avi', 1, None, 1)
    assert llava_action_sample(entry, CLASSES, 'Q?') == {
        'id': 'run/v_01', 'video': 'run/v_01.avi', 'conversations': [
            {'from': 'human', 'value': '<video>\nQ?'}, {'from': 'gpt', 'value': 'running'}]}
    frames = llava_action_sample(ActionListEntry('run/v_01', 0, 30, 1), CLASSES, 'Q?',
                                 'rawframes', 'rawframes')
    assert frames['video'] == 'rawframes/run/v_01' and frames['total_frames'] == 30
    image = llava_action_sample(ActionListEntry('p.jpg', 2, None, 1), CLASSES, 'Q?', 'images')
    assert 'video' not in image and image['image'] == 'p.jpg'
    assert image['conversations'][0]['value'] == '<image>\nQ?'


# ------------------------------------------------------------------ the dataset
def test_dataset_videos_through_the_pipeline(data):
    ds = DATASETS.build(dict(type='ActionListDataset', data_root=str(data),
                             ann_file='train_list_videos.txt', label_map='label_map.txt',
                             img_prefix='videos', pipeline=pipeline()))
    assert len(ds) == 2 and ds.metainfo['classes'] == CLASSES
    info = ds.get_data_info(1)
    assert info['sample_id'] == 'b' and info['gt_label'] == 2
    assert info['videos'] == [osp.join(str(data), 'videos', 'b.mp4')] and info['images'] == []
    assert info['messages'] == [
        {'role': 'user', 'content': '<video>\n' + action_question(CLASSES)},
        {'role': 'assistant', 'content': 'jumping'}]
    assert (info['list_file'], info['list_line']) == (str(data / 'train_list_videos.txt'), 3)
    out = ds[1]
    ids, labels = out['inputs']['input_ids'], out['inputs']['labels']
    # 4 frames, each 16 tokens pooled 2 x 2 to 4: 16 placeholders; 4 frames of 56 px.
    assert int((ids == IMAGE_TOKEN_INDEX).sum()) == 16
    assert [int(n) for n in out['inputs']['visual_frames']] == [4]
    assert tuple(out['inputs']['images'].shape) == (4, 3, 56, 56)
    assert out['data_samples'].prompt.endswith('ASSISTANT: jumping</s>')
    assert int(out['data_samples'].gt_label) == 2
    assert (labels != -100).any() and torch.equal(ids[labels != -100], labels[labels != -100])
    # Words of "<video>", the question and the one-word answer: positive (visual samples).
    assert ds.modality_lengths == [1 + len(action_question(CLASSES).split()) + 1] * 2


def test_dataset_rawframes_and_open_question(data):
    ds = ActionListDataset('train_list_rawframes.txt', 'label_map.txt', 'rawframes',
                           data_root=str(data), img_prefix='rawframes', question_mode='open',
                           pipeline=pipeline())
    info = ds.get_data_info(0)
    assert info['total_frames'] == [6] and info['videos'][0].endswith(osp.join('rawframes', 'a'))
    assert info['messages'][0]['content'] == '<video>\n' + OPEN_QUESTION
    out = ds[0]
    # Frames 1, 2, 4, 5 of 0..5 (segment midpoints), brighter by 20 a frame: order kept.
    assert out['data_samples'].prompt.endswith('ASSISTANT: walking</s>')
    means = out['inputs']['images'].float().mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1])


def test_fewer_frames_than_requested_are_repeated_with_a_warning(data):
    ds = ActionListDataset('train_list_rawframes.txt', 'label_map.txt', 'rawframes',
                           data_root=str(data), img_prefix='rawframes', pipeline=pipeline(4))
    with pytest.warns(UserWarning, match='has 3 frames, fewer than the 4 requested'):
        out = ds[1]
    images = out['inputs']['images']
    # Segment midpoints of 3 frames for 4: indices 0, 1, 1, 2 (frame 1 twice, order kept).
    assert images.shape[0] == 4
    assert torch.equal(images[1], images[2])
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[2], images[3])
    means = images.float().mean(dim=(1, 2, 3))
    assert means[0] < means[1] < means[3]


def test_dataset_images(data):
    ds = ActionListDataset('train_list_images.txt', 'label_map.txt', 'images',
                           data_root=str(data), img_prefix='images', pipeline=pipeline())
    info = ds.get_data_info(0)
    assert info['images'] == [osp.join(str(data), 'images', 'p.jpg')] and info['videos'] == []
    out = ds[0]
    assert int((out['inputs']['input_ids'] == IMAGE_TOKEN_INDEX).sum()) == N_TOK
    assert out['data_samples'].prompt.split('USER: ')[1].startswith('<image>\nWhat is')


def test_label_map_as_class_names_and_json_agree(data):
    ds = ActionListDataset(str(data / 'train_list_videos.txt'), CLASSES,
                           img_prefix=str(data / 'videos'), question='Which action?')
    record = llava_action_sample(ActionListEntry('a.mp4', 1, None, 1), CLASSES,
                                 action_question(CLASSES, 'closed', 'Which action?'))
    assert ds.get_data_info(0)['messages'][0]['content'] == record['conversations'][0]['value']
    with pytest.raises(ValueError, match='label map is empty'):
        ActionListDataset(str(data / 'train_list_videos.txt'), [])


def test_dataset_list_errors_name_file_and_line(data, tmp_path):
    bad = write(tmp_path / 'bad_list.txt', 'a.mp4 1\nb.mp4 3\n')
    with pytest.raises(ValueError, match=re.escape(
            f'{bad}:2: label 3 is outside the label map {data / "label_map.txt"} (3 classes)')):
        ActionListDataset(bad, str(data / 'label_map.txt'), img_prefix=str(data / 'videos'))
    empty = write(tmp_path / 'empty_map.txt', '\n')
    with pytest.raises(ValueError, match='empty_map.txt: the label map is empty'):
        ActionListDataset(bad, empty)


def test_missing_files_raise_or_skip_with_file_and_line(data, tmp_path):
    lst = write(tmp_path / 'list.txt', 'a.mp4 0\nnope.mp4 1\n')
    with pytest.raises(InvalidSampleError, match=re.escape(f'{lst}:2: file not found')):
        ActionListDataset(lst, CLASSES, img_prefix=str(data / 'videos'))
    ds = ActionListDataset(lst, CLASSES, img_prefix=str(data / 'videos'), skip_invalid=True)
    assert len(ds) == 1 and ds.skipped[0].reason == 'missing_image'
    assert ds.skipped[0].message.startswith(f'{lst}:2:')


def test_rawframe_count_checked_at_init_and_when_loading(data, tmp_path):
    # 'short' holds 3 frames, the list says 5.
    lst = write(tmp_path / 'frames.txt', 'a 6 0\nshort 5 1\n')
    kwargs = dict(label_map=CLASSES, list_format='rawframes',
                  img_prefix=str(data / 'rawframes'), pipeline=pipeline())
    with pytest.raises(InvalidSampleError, match=re.escape(f'{lst}:2: rawframe folder') +
                       '.*fewer frames than the 5 its line says'):
        ActionListDataset(lst, **kwargs)
    # Not checked at init: the loading error reaching the user names the list and line too.
    ds = ActionListDataset(lst, check_images=False, **kwargs)
    assert len(ds) == 2
    with pytest.raises(InvalidSampleError, match=re.escape(f'{lst}:2: LoadVisuals') +
                       '.*fewer frames than the 5 its list says'):
        ds[1]
    ds = ActionListDataset(lst, check_images=False, skip_invalid=True, **kwargs)
    ds.prepare_data(1)
    assert ds.skipped and ds.skipped[0].message.startswith(f'{lst}:2: ')


def test_filter_cfg_keeps_the_classes_named_and_oversamples_through_mmengine(data):
    kwargs = dict(ann_file='train_list_videos.txt', label_map='label_map.txt',
                  data_root=str(data), img_prefix='videos')
    ds = ActionListDataset(filter_cfg=dict(classes=['jumping']), **kwargs)
    assert [ds.get_data_info(i)['gt_label'] for i in range(len(ds))] == [2]  # b.mp4 only
    assert ds.get_data_info(0)['list_line'] == 3 and ds.metainfo['classes'] == CLASSES
    assert len(ActionListDataset(filter_cfg=dict(classes='running'), **kwargs)) == 1
    # The hard-class recipe of the default model: the list, then some classes again.
    # mmengine's wrappers build their parts in the runner's default scope.
    full = dict(type='ActionListDataset', **kwargs)
    with DefaultScope.overwrite_default_scope('mmllava'):
        mixed = DATASETS.build(dict(type='ConcatDataset', datasets=[
            full, dict(type='RepeatDataset', times=2,
                       dataset=dict(full, filter_cfg=dict(classes=['running'])))]))
    assert [mixed.get_data_info(i)['gt_label'] for i in range(len(mixed))] == [1, 2, 1, 1]


@pytest.mark.parametrize('filter_cfg,message', [
    (dict(classes=['swimming']), r"filter_cfg classes \['swimming'\] are not in the label map"),
    (dict(classes=[]), r'filter_cfg classes \[\] are not in the label map'),
    (dict(classes=['walking']), r"no sample of the classes \['walking'\]"),
    (dict(min_size=3), r'filter_cfg takes only "classes", got \[\'min_size\'\]'),
])
def test_bad_filter_cfg_is_refused(data, filter_cfg, message):
    with pytest.raises(ValueError, match=message):
        ActionListDataset('train_list_videos.txt', 'label_map.txt', data_root=str(data),
                          img_prefix='videos', filter_cfg=filter_cfg)
