"""tools/dataset_converters/action_to_llava.py: mmaction2 lists to LLaVA instruction JSON."""
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_llava import load_tool_module, run_script

from mmllava.datasets import (
    MOCAP_ACTION_CLASSES,
    MOCAP_ACTION_QUESTION,
    ActionListDataset,
    LlavaInstructDataset,
)
from mmllava.utils.video_io import write_rawframes

llava_sample = load_tool_module('tools/dataset_converters/mocap_actions').llava_sample

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ['walking', 'running', 'jumping']


def cli_main(argv):
    return run_script('tools/dataset_converters/action_to_llava.py', argv)


@pytest.fixture
def label_map(tmp_path):
    path = tmp_path / 'label_map.txt'
    path.write_text('\n'.join(CLASSES) + '\n')
    return path


def test_videos_closed(tmp_path, label_map, capsys):
    lst = tmp_path / 'train_list_videos.txt'
    lst.write_text('run/v_01.avi 1\nwalk/v_02.avi 0\n')
    out = tmp_path / 'out' / 'train.json'
    assert cli_main([lst, label_map, out]) == 0
    assert 'Wrote 2 samples (3 classes, closed question)' in capsys.readouterr().out
    question = 'What is the person doing? Answer with one of: walking, running, jumping.'
    assert json.loads(out.read_text()) == [
        {'id': 'run/v_01', 'video': 'run/v_01.avi', 'conversations': [
            {'from': 'human', 'value': '<video>\n' + question},
            {'from': 'gpt', 'value': 'running'}]},
        {'id': 'walk/v_02', 'video': 'walk/v_02.avi', 'conversations': [
            {'from': 'human', 'value': '<video>\n' + question},
            {'from': 'gpt', 'value': 'walking'}]}]


def test_same_records_as_the_mocap_renderer(tmp_path):
    # The MoCap classes and a rendered-style list give the renderer's records exactly.
    lm = tmp_path / 'label_map.txt'
    lm.write_text('\n'.join(MOCAP_ACTION_CLASSES) + '\n')
    lst = tmp_path / 'list.txt'
    lst.write_text('train_walking_0000.mp4 0\ntrain_lying_down_0001.mp4 14\n')
    out = tmp_path / 'train_llava.json'
    assert cli_main([lst, lm, out]) == 0
    assert json.loads(out.read_text()) == [
        llava_sample('train_walking_0000', 'train_walking_0000.mp4', 0),
        llava_sample('train_lying_down_0001', 'train_lying_down_0001.mp4', 14)]
    assert MOCAP_ACTION_QUESTION in out.read_text()


def test_rawframes_open_with_prefix(tmp_path, label_map):
    lst = tmp_path / 'frames.txt'
    lst.write_text('jump/v_03 42 2\n')
    out = tmp_path / 'frames.json'
    assert cli_main([lst, label_map, out, '--format', 'rawframes', '--question-mode', 'open',
                     '--data-prefix', 'rawframes']) == 0
    assert json.loads(out.read_text()) == [
        {'id': 'jump/v_03', 'video': 'rawframes/jump/v_03', 'total_frames': 42,
         'conversations': [{'from': 'human', 'value': '<video>\nWhat is the person doing?'},
                           {'from': 'gpt', 'value': 'jumping'}]}]


def test_images_with_question(tmp_path, label_map):
    lst = tmp_path / 'images.txt'
    lst.write_text('applauding_001.jpg 0\n')
    out = tmp_path / 'images.json'
    assert cli_main([lst, label_map, out, '--format', 'images', '--question',
                     'Which action is shown?']) == 0
    (record, ) = json.loads(out.read_text())
    assert record['image'] == 'applauding_001.jpg' and 'video' not in record
    assert record['conversations'][0]['value'] == (
        '<image>\nWhich action is shown? Answer with one of: walking, running, jumping.')


@pytest.mark.parametrize('list_text,map_text,message', [
    ('a.mp4 0\nb.mp4 7\n', None,
     'list.txt:2: label 7 is outside the label map {map} (3 classes)'),
    ('a.mp4 0\nb.mp4\n', None, 'list.txt:2: expected "path label" (2 fields)'),
    ('a.mp4 0\n', '', 'label_map.txt: the label map is empty'),
])
def test_errors_name_file_and_line_and_write_nothing(tmp_path, label_map, capsys, list_text,
                                                     map_text, message):
    lst = tmp_path / 'list.txt'
    lst.write_text(list_text)
    if map_text is not None:
        label_map.write_text(map_text)
    out = tmp_path / 'out.json'
    assert cli_main([lst, label_map, out]) == 1
    assert message.format(map=label_map) in capsys.readouterr().err
    assert not out.exists()


def test_json_trains_like_the_list(tmp_path, label_map):
    """The JSON through LlavaInstructDataset gives the samples ActionListDataset gives."""
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    write_rawframes(str(tmp_path / 'rawframes' / 'jump' / 'v_03'), frames)
    lst = tmp_path / 'frames.txt'
    lst.write_text('jump/v_03 4 2\n')
    out = tmp_path / 'frames.json'
    assert cli_main([lst, label_map, out, '--format', 'rawframes']) == 0
    from_json = LlavaInstructDataset(str(out), img_prefix=str(tmp_path / 'rawframes'))
    from_list = ActionListDataset(str(lst), str(label_map), 'rawframes',
                                  img_prefix=str(tmp_path / 'rawframes'))
    a, b = from_json.get_data_info(0), from_list.get_data_info(0)
    assert a['sample_id'] == b['sample_id'] == 'jump/v_03'
    assert a['messages'] == b['messages'] and a['videos'] == b['videos']
    assert list(np.atleast_1d(a['total_frames'])) == b['total_frames'] == [4]
