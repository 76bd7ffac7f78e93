"""Fuzzing the annotation readers (hypothesis): any file content, JSON or not, UTF-8 or not,
is read or refused with the reader's documented error (``ValueError``; the benchmark readers'
:class:`AnnotationError`) whose message names the file; what is read is well formed.
"""
import json
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmllava.datasets import LlavaInstructDataset
from mmllava.datasets.action_lists import read_action_list
from mmllava.datasets.annotations import (
    AnnotationError,
    read_action_labels,
    read_caption,
    read_gqa,
    read_multiple_choice,
    read_pope,
    read_vqa,
)
from mmllava.datasets.label_map import read_label_map

KEYS = ('annotations', 'data', 'question_id', 'answers', 'answer', 'answer_type', 'image',
        'image_id', 'caption', 'choices', 'num_options', 'label', 'category', 'id', 'video',
        'conversations', 'from', 'value')
scalars = (st.none() | st.booleans() | st.integers(-5, 2**66) | st.floats(allow_nan=False)
           | st.text(max_size=8) | st.sampled_from(['human', 'gpt', '<image>', 'yes', 'a.jpg']))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=4),
    max_leaves=20)
json_files = st.one_of(
    json_values.map(json.dumps),
    st.lists(json_values, max_size=4).map(lambda rows: '\n'.join(map(json.dumps, rows))),
    st.text(max_size=40)).map(str.encode) | st.binary(max_size=40)
list_lines = st.lists(st.lists(
    st.sampled_from(['a.mp4', 'dir/b.avi', 'c', '0', '1', '2', '7', '-1', '1.5', 'x', 'é', '\t']),
    max_size=4).map(' '.join), max_size=5).map('\n'.join)
text_files = (list_lines | st.text(max_size=40)).map(str.encode) | st.binary(max_size=40)


@pytest.fixture(scope='module')
def folder():
    with tempfile.TemporaryDirectory(prefix='mmllava_fuzz_') as path:
        yield path


def write(folder, name, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, 'wb') as f:
        f.write(data)
    return path


def refused(error: Exception, path: str, kind=ValueError):
    assert isinstance(error, kind), f'{type(error).__name__}: {error}'
    assert path in str(error), f'the error does not name {path}: {error}'


READERS = dict(vqa=read_vqa, caption=read_caption, multiple_choice=read_multiple_choice,
               pope=lambda path: read_pope([path]), gqa=read_gqa)


@pytest.mark.parametrize('reader', sorted(READERS))
@settings(max_examples=250)
@given(data=json_files)
def test_benchmark_readers(folder, reader, data):
    path = write(folder, f'{reader}.json', data)
    try:
        truth, keywords = READERS[reader](path)
    except Exception as e:
        return refused(e, path, AnnotationError)
    assert isinstance(truth, dict) and isinstance(keywords, dict)
    assert all(isinstance(key, str) and 'gt' in value for key, value in truth.items())


@settings(max_examples=300)
@given(data=text_files, list_format=st.sampled_from(['videos', 'rawframes', 'images']),
       num_classes=st.none() | st.integers(1, 8))
def test_action_lists(folder, data, list_format, num_classes):
    path = write(folder, 'list.txt', data)
    try:
        entries = read_action_list(path, list_format, num_classes)
    except Exception as e:
        return refused(e, path)
    assert entries
    for entry in entries:
        assert entry.label >= 0 and (num_classes is None or entry.label < num_classes)
        assert entry.total_frames is None or entry.total_frames >= 1


@settings(max_examples=200)
@given(data=text_files, labels=text_files)
def test_label_maps_and_action_labels(folder, data, labels):
    label_map = write(folder, 'label_map.txt', labels)
    try:
        names = read_label_map(label_map)
    except Exception as e:
        refused(e, label_map)
    else:
        assert names and len(set(names)) == len(names) and all(n.strip() for n in names)
    path = write(folder, 'test_list.txt', data)
    try:
        truth, keywords = read_action_labels(path, label_map)
    except Exception as e:
        # The label map's own error names the label map; the list's names the list.
        assert isinstance(e, AnnotationError) or isinstance(e, ValueError), repr(e)
        assert path in str(e) or label_map in str(e), str(e)
        return
    assert all(0 <= v['gt'] < len(keywords['classes']) for v in truth.values())


@settings(max_examples=250)
@given(data=json_files | st.lists(st.fixed_dictionaries(dict(
    id=scalars, image=scalars | st.lists(scalars, max_size=2),
    conversations=st.lists(st.fixed_dictionaries({'from': scalars, 'value': scalars}),
                           max_size=3) | json_values)), max_size=3).map(json.dumps).map(
                               str.encode),
    test_mode=st.booleans())
def test_llava_instruction_files(folder, data, test_mode):
    path = write(folder, 'instruct.json', data)
    try:
        dataset = LlavaInstructDataset(path, check_images=False, skip_invalid=True,
                                       test_mode=test_mode)
    except Exception as e:
        return refused(e, path)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        assert info['messages'] and isinstance(info['images'], list)
