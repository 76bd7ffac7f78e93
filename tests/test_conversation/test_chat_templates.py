"""Template strings, checked against the original LLaVA's conversation.py."""
import dataclasses

import pytest

from mmllava.conversation import ConversationTemplate, build_prompt, get_template
from mmllava.registry import TEMPLATES

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's "
                 "questions.")
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the human's "
                   "questions.")
LLAVA_LLAMA_2_SYSTEM = ('You are a helpful language and vision assistant. You are able to '
                        'understand the visual content that the user provides, and assist the '
                        'user with a variety of tasks using natural language.')

TWO_TURNS = [
    dict(role='user', content='<image>\nWhat is it?'),
    dict(role='assistant', content='A dog.'),
    dict(role='user', content='Color?'),
    dict(role='assistant', content='Brown.'),
]


def test_registered_names():
    for name in ('plain', 'vicuna_v1', 'llava_v1', 'llava_llama_2', 'mistral_instruct',
                 'chatml', 'qwen_1_5'):
        assert name in TEMPLATES.module_dict
        template = get_template(name)
        assert isinstance(template, ConversationTemplate) and template.name == name


def test_vicuna_v1_prompt():
    assert build_prompt(TWO_TURNS[:3], 'vicuna_v1') == (
        VICUNA_SYSTEM + ' USER: <image>\nWhat is it? ASSISTANT: A dog.</s>'
        'USER: Color? ASSISTANT:')
    assert build_prompt(TWO_TURNS, 'vicuna_v1', add_generation_prompt=False) == (
        VICUNA_SYSTEM + ' USER: <image>\nWhat is it? ASSISTANT: A dog.</s>'
        'USER: Color? ASSISTANT: Brown.</s>')
    assert get_template('vicuna_v1').add_bos


def test_llava_v1_prompt():
    assert build_prompt(TWO_TURNS[:1], 'llava_v1') == (
        LLAVA_V1_SYSTEM + ' USER: <image>\nWhat is it? ASSISTANT:')


def test_plain_prompt():
    # The human text is dropped; the caption ends with "\n".
    assert build_prompt(TWO_TURNS[:2], 'plain', add_generation_prompt=False) == (
        '<image>A dog.\n')
    assert build_prompt(TWO_TURNS[:1], 'plain') == '<image>'


def test_llava_llama_2_prompt():
    assert build_prompt(TWO_TURNS[:3], 'llava_llama_2') == (
        f'[INST] <<SYS>>\n{LLAVA_LLAMA_2_SYSTEM}\n<</SYS>>\n\n<image>\nWhat is it? [/INST] '
        'A dog. </s><s>[INST] Color? [/INST]')
    assert build_prompt(TWO_TURNS, 'llava_llama_2', add_generation_prompt=False).endswith(
        '[INST] Color? [/INST] Brown. </s>')


def test_mistral_instruct_prompt():
    # LLaVA-NeXT's conv_mistral_instruct: LLAMA_2 style, system "", sep "", sep2 "</s>".
    assert build_prompt(TWO_TURNS[:3], 'mistral_instruct') == (
        '[INST] <image>\nWhat is it? [/INST] A dog. </s>[INST] Color? [/INST]')
    assert build_prompt(TWO_TURNS, 'mistral_instruct', add_generation_prompt=False) == (
        '[INST] <image>\nWhat is it? [/INST] A dog. </s>[INST] Color? [/INST] Brown. </s>')
    assert get_template('mistral_instruct').add_bos
    # The original wraps a system text only when there is one, for every llama_2 template.
    messages = [dict(role='system', content='')] + TWO_TURNS[:1]
    assert build_prompt(messages, 'llava_llama_2') == '[INST] <image>\nWhat is it? [/INST]'
    messages[0]['content'] = 'Be brief.'
    assert build_prompt(messages, 'mistral_instruct') == (
        '[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<image>\nWhat is it? [/INST]')


def test_qwen_1_5_prompt():
    # LLaVA-NeXT's conv_qwen (OneVision, LLaVA-Video): CHATML, Qwen's default system text.
    assert build_prompt(TWO_TURNS[:1], 'qwen_1_5') == (
        '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
        '<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n')
    assert build_prompt(TWO_TURNS, 'qwen_1_5', add_generation_prompt=False) == build_prompt(
        TWO_TURNS, 'chatml', add_generation_prompt=False)
    assert not get_template('qwen_1_5').add_bos
    assert get_template('qwen_1_5').stop_token == '<|im_end|>'


def test_chatml_prompt():
    assert build_prompt(TWO_TURNS[:3], 'chatml') == (
        '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
        '<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n'
        '<|im_start|>assistant\nA dog.<|im_end|>\n'
        '<|im_start|>user\nColor?<|im_end|>\n'
        '<|im_start|>assistant\n')
    assert not get_template('chatml').add_bos
    # An empty system message leaves the system block out.
    messages = [dict(role='system', content='')] + TWO_TURNS[:1]
    assert build_prompt(messages, 'chatml').startswith('<|im_start|>user\n')


def test_system_message_overrides():
    messages = [dict(role='system', content='Be brief.')] + TWO_TURNS[:1]
    assert build_prompt(messages, 'vicuna_v1') == (
        'Be brief. USER: <image>\nWhat is it? ASSISTANT:')


def test_get_template_forms():
    template = get_template('vicuna_v1')
    assert get_template(template) is template
    custom = get_template(dict(type='vicuna_v1', system='Hi.'))
    assert custom.system == 'Hi.' and custom.roles == template.roles
    with pytest.raises(KeyError, match='known:.*vicuna_v1'):
        get_template('vicuna_v9')
    with pytest.raises(TypeError):
        get_template(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        template.system = 'x'
    with pytest.raises(ValueError, match='style'):
        ConversationTemplate(name='bad', style='nope')


def test_stop_token():
    assert get_template('vicuna_v1').stop_token == 'eos'
    assert get_template('chatml').stop_token == '<|im_end|>'
    assert get_template('plain').stop_token is None
