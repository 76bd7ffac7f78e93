"""LLaVA instruction JSON: lazy records, <image> placement, validation, counted skips; tiny data."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from mmllava.conversation import IGNORE_INDEX, IMAGE_TOKEN_INDEX, SentencePieceTokenizer
from mmllava.datasets import (
    InvalidSampleError,
    LlavaInstructDataset,
    TinyLlavaDataset,
    make_tiny_llava_data,
)
from mmllava.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = str(ROOT / 'resources' / 'tiny-tokenizer' / 'tokenizer.model')


def pipeline(template='vicuna_v1', **tokenize):
    return [
        dict(type='LoadImages'),
        dict(type='PadToSquare'),
        dict(type='CLIPResizeCrop', size=28),
        dict(type='TokenizeConversation', tokenizer=TOKENIZER, template=template,
             num_image_tokens=4, **tokenize),
        dict(type='PackLlavaInputs'),
    ]


def conv(*turns):
    return [dict({'from': 'human' if i % 2 == 0 else 'gpt', 'value': v})
            for i, v in enumerate(turns)]


def write(root: Path, records, images=('a.png', 'b.png')):
    (root / 'imgs').mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(root / 'imgs' / name)
    (root / 'ann.json').write_text(json.dumps(records))
    return root


GOOD = [
    dict(id='single', image='a.png', conversations=conv('What is it? <image>', 'A box.',
                                                       'Colour?', 'Grey.')),
    dict(id='multi', image=['a.png', 'b.png'],
         conversations=conv('First <image> then <image>. Same?', 'Yes.')),
    dict(id='text', conversations=conv('Hello there', 'Hi.')),
    dict(id='noplaceholder', image='b.png', conversations=conv('Describe.', 'Grey.')),
]


def build(root, records=GOOD, **kwargs):
    write(root, records)
    return LlavaInstructDataset(ann_file='ann.json', data_root=str(root), img_prefix='imgs',
                                **kwargs)


def test_lazy_records_and_sample_keys(tmp_path):
    ds = build(tmp_path)
    assert len(ds) == 4 and ds.skipped == []
    # Lazy: the raw records are serialized bytes; nothing parsed is kept.
    assert ds.serialize_data and ds.data_list == []
    info = ds.get_data_info(0)
    assert info['sample_id'] == 'single'
    assert info['images'] == [os.path.join(str(tmp_path), 'imgs', 'a.png')]
    # The original's preprocess_multimodal: "<image>\n" moved to the front of its turn.
    assert info['messages'][0] == dict(role='user', content='<image>\nWhat is it?')
    assert [m['role'] for m in info['messages']] == ['user', 'assistant'] * 2
    multi = ds.get_data_info(1)
    assert multi['messages'][0]['content'] == 'First <image> then <image>. Same?'  # kept
    assert len(multi['images']) == 2
    text = ds.get_data_info(2)
    assert text['images'] == [] and text['modality_length'] < 0
    # A single image without a placeholder gets one, first in the first human turn.
    assert ds.get_data_info(3)['messages'][0]['content'] == '<image>\nDescribe.'
    assert ds.modality_lengths == [8, 6, -3, 2]
    assert DATASETS.get('LlavaInstructDataset') is LlavaInstructDataset


def test_pipeline_outputs(tmp_path):
    ds = build(tmp_path, pipeline=pipeline())
    out = ds[1]
    ids = out['inputs']['input_ids']
    assert out['inputs']['images'].shape == (2, 3, 28, 28)
    assert int((ids == IMAGE_TOKEN_INDEX).sum()) == 8
    assert out['inputs']['labels'].shape == ids.shape
    text = ds[2]
    assert 'images' not in text['inputs']
    assert (text['inputs']['labels'] != IGNORE_INDEX).any()


@pytest.mark.parametrize('record,reason,words', [
    (dict(id='gone', image='missing.png', conversations=conv('<image>', 'x')),
     'missing_image', ['missing.png']),
    (dict(id='mute', image='a.png', conversations=conv('<image>\nHi')), 'no_gpt_turn',
     ['gpt']),
    (dict(id='two', image='a.png', conversations=conv('<image> <image>', 'x')),
     'image_count_mismatch', ['2 <image>', '1 image']),
    (dict(id='textimg', conversations=conv('<image> hi', 'x')), 'image_count_mismatch', []),
    (dict(id='bad', image='a.png', conversations=[dict(value='x')]), 'malformed', []),
])
def test_invalid_samples_raise_or_are_counted(tmp_path, record, reason, words):
    with pytest.raises(ValueError) as info:
        build(tmp_path, GOOD + [record])
    message = str(info.value)
    assert isinstance(info.value, InvalidSampleError) and info.value.reason == reason
    assert repr(record['id']) in message and 'ann.json' in message
    assert all(w in message for w in words), message
    ds = build(tmp_path, GOOD + [record, dict(record, id='again')], skip_invalid=True)
    assert len(ds) == 4
    assert [(s.sample_id, s.reason) for s in ds.skipped] == [(record['id'], reason),
                                                             ('again', reason)]


def test_strict_placeholder_switch(tmp_path):
    with pytest.raises(ValueError, match='0 <image>'):
        build(tmp_path, prepend_missing_image=False)


def test_fully_masked_sample_raises_or_is_counted(tmp_path):
    long_question = ' '.join(['word'] * 80)
    records = [dict(id='ok', conversations=conv('Hi', 'Hello.')),
               dict(id='masked', conversations=conv(long_question, 'Yes.'))]
    tokenize = dict(max_length=40, truncate=True)  # the cut removes the only answer
    ds = build(tmp_path, records, pipeline=pipeline(**tokenize))
    assert ds[0]['inputs']['input_ids'].numel() > 0
    with pytest.raises(ValueError, match="'masked'.*no trainable label") as info:
        ds[1]
    assert info.value.reason == 'fully_masked' and 'ann.json' in str(info.value)
    ds = build(tmp_path, records, pipeline=pipeline(**tokenize), skip_invalid=True)
    np.random.seed(0)
    for _ in range(3):  # every skip is counted, another sample comes instead
        assert ds[1]['data_samples'].sample_id == 'ok'
    assert [(s.sample_id, s.reason) for s in ds.skipped] == [('masked', 'fully_masked')] * 3


def test_labels_fully_masked_after_pipeline_is_caught(tmp_path):
    def mask_all(results):  # a (custom) transform that leaves nothing to learn
        results['inputs']['labels'][:] = IGNORE_INDEX
        return results

    ds = build(tmp_path, pipeline=pipeline() + [mask_all])
    with pytest.raises(ValueError, match='fully masked'):
        ds[2]


# ------------------------------------------------------------------ tiny rendered data
def test_tiny_data_is_deterministic_small_and_tokenizer_friendly(tmp_path):
    counts = make_tiny_llava_data(str(tmp_path / 'a'), num=40, seed=3)
    make_tiny_llava_data(str(tmp_path / 'b'), num=40, seed=3)
    assert counts == dict(images=40, pretrain=40, finetune=46, text_only=4, two_image=2)
    for name in ['pretrain.json', 'finetune.json', 'images/00007.png']:
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    size = sum(p.stat().st_size for p in (tmp_path / 'a' / 'images').iterdir())
    assert size < 40 * 1024  # ~200 B an image: 200 images are far below 1 MB
    image = np.asarray(Image.open(tmp_path / 'a' / 'images' / '00000.png'))
    assert image.shape == (56, 56, 3) and len(np.unique(image.reshape(-1, 3), axis=0)) > 1
    tokenizer = SentencePieceTokenizer(TOKENIZER)
    words = set()
    for name in ['pretrain.json', 'finetune.json']:
        for record in json.loads((tmp_path / 'a' / name).read_text()):
            for turn in record['conversations']:
                words.update(turn['value'].replace('<image>', ' ').split())
    pieces = [len(tokenizer.encode(w)) for w in words]
    assert max(pieces) <= 6 and np.mean(pieces) < 3, dict(zip(words, pieces))


def test_tiny_dataset_renders_on_first_use(tmp_path):
    root = tmp_path / 'tiny'
    ds = TinyLlavaDataset(data_root=str(root), split='finetune', num=40)
    assert (root / 'pretrain.json').exists() and len(ds) == 46 and ds.skipped == []
    lengths = np.asarray(ds.modality_lengths)
    assert (lengths < 0).sum() == 4
    assert any(len(ds.get_data_info(i)['images']) == 2 for i in range(len(ds)))
    mtime = (root / 'finetune.json').stat().st_mtime_ns
    TinyLlavaDataset(data_root=str(root), split='pretrain', num=40)
    assert (root / 'finetune.json').stat().st_mtime_ns == mtime  # existing: left alone


def test_tiny_config_fragments_build_and_override(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / '_base_' / 'datasets' / 'tiny_llava_data.py'))
    make_tiny_llava_data(str(tmp_path), num=20)
    for key, template in [('tiny_pretrain_dataloader', 'plain'),
                          ('tiny_finetune_dataloader', 'vicuna_v1')]:
        loader = cfg[key]
        loader.dataset.data_root = str(tmp_path)  # what --cfg-options ...data_root=DIR does
        assert loader.dataset.pipeline[3].template == template
        ds = DATASETS.build(loader.dataset)
        out = ds[0]
        assert out['inputs']['images'].shape[-2:] == (56, 56)
        assert int((out['inputs']['input_ids'] == IMAGE_TOKEN_INDEX).sum()) == 16
        assert torch.is_tensor(out['inputs']['labels'])


def test_clips_mix_with_images_in_placeholder_order(tmp_path):
    from mmllava.utils.video_io import write_mp4
    write(tmp_path, [])
    clip = np.stack([np.full((16, 16, 3), 20 * i, np.uint8) for i in range(6)])
    write_mp4(str(tmp_path / 'imgs' / 'c.mp4'), clip)
    records = [
        dict(id='clip', video='c.mp4', conversations=conv('What happens?', 'Nothing.')),
        dict(id='mixed', image='a.png', video=['c.mp4'],
             conversations=conv('<video> then <image>: same?', 'No.')),
        dict(id='badcount', video=['c.mp4', 'c.mp4'],
             conversations=conv('<video> only once', 'Hm.')),
        dict(id='gone', video='missing.mp4', conversations=conv('<video>?', 'Hm.')),
    ]
    (tmp_path / 'ann.json').write_text(json.dumps(records))
    steps = pipeline()
    steps[0] = dict(type='LoadVisuals', num_frames=3, num_image_tokens=4)
    ds = LlavaInstructDataset(ann_file='ann.json', data_root=str(tmp_path), img_prefix='imgs',
                              pipeline=steps, skip_invalid=True)
    assert len(ds) == 2 and sorted(s.reason for s in ds.skipped) == [
        'image_count_mismatch', 'missing_image']
    info = ds.get_data_info(0)
    assert info['videos'] == [str(tmp_path / 'imgs' / 'c.mp4')] and info['images'] == []
    assert info['messages'][0]['content'] == '<video>\nWhat happens?'  # placed first
    out = ds[1]
    sample = out['data_samples']
    assert sample.prompt.count('<video>') == 1 and sample.prompt.index('<video>') < \
        sample.prompt.index('<image>')
    assert out['inputs']['visual_frames'].tolist() == [3, 1]  # the clip first, as placed
