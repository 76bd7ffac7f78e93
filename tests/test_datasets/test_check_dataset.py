"""tools/analysis_tools/check_dataset.py on a small JSON with planted problems."""
import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = str(ROOT / 'resources' / 'tiny-tokenizer' / 'tokenizer.model')


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'check_dataset', ROOT / 'tools' / 'analysis_tools' / 'check_dataset.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conv(*turns):
    return [dict({'from': 'human' if i % 2 == 0 else 'gpt', 'value': v})
            for i, v in enumerate(turns)]


GOOD = [
    dict(id='ok-image', image='a.png', conversations=conv('<image>\nWhat is it?', 'A box.')),
    dict(id='ok-text', conversations=conv('Hi', 'Hello.')),
    dict(id='ok-two', image=['a.png', 'a.png'], conversations=conv('<image><image>Same?',
                                                                   'Yes.')),
]
PLANTED = GOOD + [
    dict(id='gone', image='missing.png', conversations=conv('<image>\nWhat?', 'X.')),
    dict(id='mute', image='a.png', conversations=conv('<image>\nWhat?')),
    dict(id='double', image='a.png', conversations=conv('<image>\n<image>\nWhat?', 'X.')),
    # The truncation at max_length cuts its only answer: nothing left to learn.
    dict(id='masked', conversations=conv(' '.join(['word'] * 60), 'Yes.')),
    # Kept, but longer than the model's max_position_embeddings.
    dict(id='long', conversations=conv('Tell me.', ' '.join(['red blue'] * 12))),
]

CONFIG = f"""
model = dict(llm=dict(config=dict(max_position_embeddings=60)))
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='LlavaInstructDataset', data_root='/nonexistent', ann_file='planted.json',
        img_prefix='images',
        pipeline=[
            dict(type='LoadImages'),
            dict(type='PadToSquare'),
            dict(type='CLIPResizeCrop', size=28),
            dict(type='TokenizeConversation', tokenizer={TOKENIZER!r}, template='vicuna_v1',
                 num_image_tokens=4, max_length=64, truncate=True),
            dict(type='PackLlavaInputs'),
        ]))
"""


def setup(tmp_path):
    (tmp_path / 'images').mkdir()
    Image.fromarray(np.full((10, 14, 3), 90, np.uint8)).save(tmp_path / 'images' / 'a.png')
    (tmp_path / 'planted.json').write_text(json.dumps(PLANTED))
    (tmp_path / 'good.json').write_text(json.dumps(GOOD))
    (tmp_path / 'cfg.py').write_text(CONFIG)


def test_planted_problems_are_counted(tmp_path, capsys):
    setup(tmp_path)
    tool = load_tool()
    out = tmp_path / 'report.json'
    code = tool.main([str(tmp_path / 'cfg.py'), '--out', str(out), '--cfg-options',
                      f'train_dataloader.dataset.data_root={tmp_path}'])
    assert code == 1
    report = json.loads(out.read_text())
    counts = {k: v['count'] for k, v in report['problems'].items()}
    assert counts == dict(missing_image=1, no_gpt_turn=1, image_count_mismatch=1,
                          fully_masked=1, too_long=1)
    examples = {k: [e['sample_id'] for e in v['examples']]
                for k, v in report['problems'].items()}
    assert examples == dict(missing_image=['gone'], no_gpt_turn=['mute'],
                            image_count_mismatch=['double'], fully_masked=['masked'],
                            too_long=['long'])
    assert report['num_samples'] == 8 and report['num_checked'] == 5
    assert report['num_ok'] == 3 and report['num_problems'] == 5
    assert report['modalities'] == dict(multimodal=2, text_only=2)
    lengths = report['lengths']
    assert lengths['max'] == 64 and lengths['num_over_max_length'] == 1
    assert lengths['min'] <= lengths['median'] <= lengths['max']
    text = capsys.readouterr().out
    assert 'missing image: 1' in text and "'gone'" in text and 'over max length 60: 1' in text


def test_clean_data_exits_zero(tmp_path, capsys):
    setup(tmp_path)
    code = load_tool().main([str(tmp_path / 'cfg.py'), '--cfg-options',
                             f'train_dataloader.dataset.data_root={tmp_path}',
                             'train_dataloader.dataset.ann_file=good.json'])
    assert code == 0
    assert 'problems: none' in capsys.readouterr().out
