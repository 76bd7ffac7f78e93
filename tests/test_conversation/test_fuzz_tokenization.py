"""Fuzzing templates and per-turn tokenization (hypothesis).

Any message list, however malformed, tokenizes or raises ``ValueError``; a well-formed
conversation of any text gives, with every template, the ids the original LLaVA's
whole-prompt tokenization gives (sentencepiece), labels that are the answers' ids and nothing
else, one run of placeholder ids per visual, and the prompt :func:`build_prompt` writes.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conversation_tokenization import TEMPLATES, original_ids

from mmllava.conversation import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    build_prompt,
    from_llava_conversations,
    tokenize_conversation,
)

# Words, digits, punctuation, whitespace runs, accents, CJK and emoji, and the placeholders.
alphabet = st.sampled_from(list('abcXYZ019 .,!?:;-\'"\n\t') + ['  ', '\n\n', 'é', '中', '🙂',
                                                                 'ASSISTANT', 'USER'])
words = st.lists(alphabet, max_size=12).map(''.join)
contents = st.lists(words | st.sampled_from(['<image>', '<video>', '<image>\n']),
                    min_size=1, max_size=4).map(''.join)
answers = words.filter(lambda s: s.strip())


@st.composite
def conversations(draw):
    turns = draw(st.integers(1, 3))
    messages = []
    if draw(st.booleans()):
        messages.append(dict(role='system', content=draw(words)))
    for _ in range(turns):
        messages.append(dict(role='user', content=draw(contents)))
        messages.append(dict(role='assistant', content=draw(answers)))
    return messages


anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | contents,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(['role', 'content', 'from', 'value']) | st.text(max_size=3), inner,
        max_size=3), max_leaves=12)
roles = st.sampled_from(['system', 'user', 'assistant', 'human', 'gpt', 'tool', ''])
loose_messages = st.lists(
    st.fixed_dictionaries(dict(role=roles, content=contents | anything)) | anything, max_size=5)


@settings(max_examples=600)
@given(messages=conversations(), template=st.sampled_from(TEMPLATES),
       generation=st.booleans(), count=st.integers(1, 3))
def test_ids_are_the_originals_for_any_text(sp_tokenizer, messages, template, generation,
                                            count):
    if template == 'plain' and messages[0]['role'] == 'system':
        # LLaVA's pretraining prompt has no system text; ours puts one right before the
        # caption, without a space, so sentencepiece would merge across the two.
        messages = messages[1:]
    if generation:
        messages = messages[:-1]
    out = tokenize_conversation(messages, sp_tokenizer, template, num_visual_tokens=count,
                                add_generation_prompt=generation)
    prompt = build_prompt(messages, template, add_generation_prompt=generation)
    assert out['prompt'] == prompt
    visuals = sum(m['content'].count('<image>') + m['content'].count('<video>')
                  for m in messages)
    ids, labels = out['input_ids'], out['labels']
    assert ids == original_ids(prompt, sp_tokenizer, template, [count] * visuals)
    assert ids.count(IMAGE_TOKEN_INDEX) == count * visuals
    assert len(labels) == len(ids)
    assert all(label in (IGNORE_INDEX, i) for label, i in zip(labels, ids))
    assert IMAGE_TOKEN_INDEX not in labels
    trained = [label for label in labels if label != IGNORE_INDEX]
    if generation:
        assert trained == []
    else:  # every answer's text, and nothing but answers and their end tokens
        text = sp_tokenizer.decode(trained)
        for m in messages:
            if m['role'] == 'assistant':
                assert m['content'].strip().split()[0] in text


@settings(max_examples=500)
@given(messages=loose_messages, template=st.sampled_from(TEMPLATES),
       generation=st.booleans(), max_length=st.none() | st.integers(0, 64),
       truncate=st.booleans())
def test_malformed_messages_raise_value_error_only(sp_tokenizer, messages, template, generation,
                                                   max_length, truncate):
    try:
        out = tokenize_conversation(messages, sp_tokenizer, template, num_visual_tokens=2,
                                    add_generation_prompt=generation, max_length=max_length,
                                    truncate=truncate)
    except ValueError as e:
        assert str(e)
        return
    assert len(out['input_ids']) == len(out['labels'])
    assert max_length is None or len(out['input_ids']) <= max_length


@settings(max_examples=400)
@given(conversations=st.lists(st.fixed_dictionaries(dict(from_=roles, value=contents | anything))
                              .map(lambda d: {'from': d['from_'], 'value': d['value']})
                              | anything, max_size=5) | anything,
       training=st.booleans())
def test_llava_json_turns_convert_or_raise_value_error(conversations, training):
    try:
        messages = from_llava_conversations(conversations, training=training)
    except ValueError as e:
        assert str(e)
        return
    assert messages and all(m['role'] in ('system', 'user', 'assistant') for m in messages)
    assert not training or any(m['role'] == 'assistant' for m in messages)


@pytest.mark.parametrize('template', ['chatml', 'vicuna_v1'])
@settings(max_examples=150)
@given(messages=conversations())
def test_byte_level_bpe_tokenizes_any_text(hf_tokenizer, template, messages):
    if template == 'vicuna_v1':
        template = dict(type='vicuna_v1', add_bos=False, special_tokens=(('</s>', 'eos'),))
    out = tokenize_conversation(messages, hf_tokenizer, template, num_visual_tokens=1)
    assert len(out['input_ids']) == len(out['labels'])
    assert all(0 <= i < hf_tokenizer.vocab_size for i in out['input_ids']
               if i != IMAGE_TOKEN_INDEX)
