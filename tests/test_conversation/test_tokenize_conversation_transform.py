"""The TokenizeConversation transform."""
import pickle
from pathlib import Path

import pytest

from mmllava.conversation import IGNORE_INDEX, IMAGE_TOKEN_INDEX, tokenize_conversation
from mmllava.registry import TRANSFORMS

TINY_TOKENIZER = Path(__file__).resolve().parents[2] / 'resources' / 'tiny-tokenizer'
MESSAGES = [dict(role='user', content='<image>\nWhat is the man doing?'),
            dict(role='assistant', content='Running.')]
CONVERSATIONS = [{'from': 'human', 'value': '<image>\nWhat is the man doing?'},
                 {'from': 'gpt', 'value': 'Running.'}]


def build(**kwargs):
    cfg = dict(type='TokenizeConversation', tokenizer=str(TINY_TOKENIZER), num_image_tokens=4)
    cfg.update(kwargs)
    return TRANSFORMS.build(cfg)


def test_training_sample(sp_tokenizer):
    results = build()(dict(messages=MESSAGES, sample_id=7))
    expected = tokenize_conversation(MESSAGES, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4)
    assert results['input_ids'] == expected['input_ids']
    assert results['labels'] == expected['labels']
    assert results['prompt'] == expected['prompt']
    assert results['input_ids'].count(IMAGE_TOKEN_INDEX) == 4
    assert results['sample_id'] == 7  # other keys kept


def test_llava_json_and_visual_counts():
    transform = build(template='plain')
    results = transform(dict(conversations=CONVERSATIONS, num_visual_tokens=[9]))
    assert results['input_ids'].count(IMAGE_TOKEN_INDEX) == 9
    assert results['prompt'] == '<image>Running.\n'
    from_messages = transform(dict(messages=MESSAGES, num_visual_tokens=[9]))
    for key in ('input_ids', 'labels', 'prompt'):
        assert results[key] == from_messages[key]


def test_inference_drops_the_reference_answer():
    transform = build(add_generation_prompt=True)
    results = transform(dict(conversations=CONVERSATIONS))
    assert results['prompt'].endswith('What is the man doing? ASSISTANT:')
    assert set(results['labels']) == {IGNORE_INDEX}
    assert transform(dict(messages=MESSAGES[:1]))['input_ids'] == results['input_ids']


def test_accepts_a_built_tokenizer_and_pickles(sp_tokenizer):
    transform = build(tokenizer=sp_tokenizer)
    assert transform.tokenizer is sp_tokenizer
    clone = pickle.loads(pickle.dumps(transform))
    assert clone(dict(messages=MESSAGES))['input_ids'] == transform(
        dict(messages=MESSAGES))['input_ids']
    assert 'vicuna_v1' in repr(transform)


def test_errors_name_the_sample():
    transform = build(max_length=8)
    with pytest.raises(ValueError, match="sample 'coco/42'.*over max_length 8"):
        transform(dict(messages=MESSAGES, sample_id='coco/42'))
    with pytest.raises(ValueError, match='sample 3: needs "messages" or "conversations"'):
        build()(dict(sample_id=3))
    with pytest.raises(ValueError, match='1 counts but the conversation has 0'):
        build()(dict(messages=[dict(role='user', content='Hi'),
                               dict(role='assistant', content='Hello')],
                     num_visual_tokens=[576]))
    with pytest.raises(ValueError, match='no "gpt" turn'):
        build()(dict(conversations=CONVERSATIONS[:1]))
    with pytest.raises(ValueError, match='needs a tokenizer'):
        build(tokenizer=None)


def test_truncate():
    full = build()(dict(messages=MESSAGES))
    n = len(full['input_ids'])
    results = build(max_length=n - 1, truncate=True)(dict(messages=MESSAGES))
    assert results['input_ids'] == full['input_ids'][:-1]
    assert results['labels'] == full['labels'][:-1]
