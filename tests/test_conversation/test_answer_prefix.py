"""An answer prefix starts the assistant's turn (MVBench's "Best option:("): prompt text whose
ids are those of the whole text, after which generation (or a ranked candidate) goes on."""
import re

import pytest

from mmllava.conversation import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    answer_token_ids,
    build_prompt,
    get_template,
    tokenize_conversation,
)
from mmllava.datasets.transforms import TokenizeConversation

PREFIX = 'Best option:('
MESSAGES = [dict(role='system', content='Watch carefully.\n'),
            dict(role='user', content='<video>\nQuestion: What is the man doing?\nOptions:\n'
                                      '(A) running\n(B) dancing\nOnly give the best option.')]
VICUNA_BPE = dict(type='vicuna_v1', add_bos=False, special_tokens=(('</s>', 'eos'),))


def sp_whole_text_ids(prompt, tokenizer, template, count):
    """The original LLaVA's ids: the whole prompt split only at visuals and special tokens."""
    template = get_template(template)
    specials = dict(template.special_tokens)
    pattern = '|'.join(re.escape(s) for s in ['<image>', '<video>', *specials])
    ids = [tokenizer.bos_token_id] if template.add_bos else []
    for chunk in re.split(f'({pattern})', prompt):
        if chunk in ('<image>', '<video>'):
            ids += [IMAGE_TOKEN_INDEX] * count
        elif chunk in specials:
            ids.append(tokenizer.token_to_id(specials[chunk]) if specials[chunk] not in
                       ('bos', 'eos') else getattr(tokenizer, f'{specials[chunk]}_token_id'))
        elif chunk:
            ids += tokenizer.encode(chunk)
    return ids


def hf_whole_text_ids(prompt, tokenizer, count):
    ids = []
    for chunk in re.split('(<image>|<video>)', prompt):
        if chunk in ('<image>', '<video>'):
            ids += [IMAGE_TOKEN_INDEX] * count
        elif chunk:
            ids += tokenizer.tokenizer.encode(chunk, add_special_tokens=False)
    return ids


@pytest.mark.parametrize('template, ending', [
    ('vicuna_v1', ' ASSISTANT: Best option:('),
    ('qwen_1_5', '<|im_start|>assistant\nBest option:('),
    ('llava_llama_2', '[/INST] Best option:('),
])
def test_generation_prompt_ends_with_the_prefix_ids_of_whole_text(sp_tokenizer, template,
                                                                  ending):
    out = tokenize_conversation(MESSAGES, sp_tokenizer, template, num_visual_tokens=3,
                                add_generation_prompt=True, answer_prefix=PREFIX)
    plain = build_prompt(MESSAGES, template, add_generation_prompt=True)
    assert out['prompt'].endswith(ending)
    assert out['prompt'] == build_prompt(MESSAGES, template, answer_prefix=PREFIX)
    # The prefix is what the plain generation prompt lacks, laid out as an answer's start.
    assert out['prompt'][len(plain):].strip() == PREFIX
    expected = sp_whole_text_ids(out['prompt'], sp_tokenizer, template, 3)
    assert out['input_ids'] == expected
    assert set(out['labels']) == {IGNORE_INDEX}


@pytest.mark.parametrize('template', ['qwen_1_5', 'vicuna_v1'])
def test_generation_prompt_ids_of_whole_text_bpe(hf_tokenizer, template):
    template = VICUNA_BPE if template == 'vicuna_v1' else template
    out = tokenize_conversation(MESSAGES, hf_tokenizer, template, num_visual_tokens=2,
                                add_generation_prompt=True, answer_prefix=PREFIX)
    assert out['prompt'].endswith(PREFIX)
    assert out['input_ids'] == hf_whole_text_ids(out['prompt'], hf_tokenizer, 2)


@pytest.mark.parametrize('template', ['vicuna_v1', 'qwen_1_5'])
def test_answer_after_prefix_is_the_only_label(sp_tokenizer, template):
    gen = tokenize_conversation(MESSAGES, sp_tokenizer, template, num_visual_tokens=3,
                                add_generation_prompt=True, answer_prefix=PREFIX)
    full = tokenize_conversation(MESSAGES + [dict(role='assistant', content='A) running')],
                                 sp_tokenizer, template, num_visual_tokens=3,
                                 answer_prefix=PREFIX)
    n = len(gen['input_ids'])
    assert full['input_ids'][:n] == gen['input_ids']  # the prompt, prefix included
    assert set(full['labels'][:n]) == {IGNORE_INDEX}
    learned = [t for t in full['labels'][n:] if t != IGNORE_INDEX]
    assert full['labels'][n:n + len(learned)] == learned  # then chatml's untrained "\n"
    # The continuation "A) running" goes on from "(": no dummy prefix, then the stop token.
    stop = sp_tokenizer.eos_token_id if template == 'vicuna_v1' else \
        sp_tokenizer.token_to_id('<|im_end|>')
    assert learned == sp_tokenizer.encode('A) running', add_dummy_prefix=False) + [stop]
    assert answer_token_ids(['A) running'], sp_tokenizer, template,
                            answer_prefix=PREFIX) == [learned]
    assert full['prompt'].endswith(PREFIX + 'A) running' + ('</s>' if template == 'vicuna_v1'
                                                            else '<|im_end|>\n'))


def test_transform_takes_the_samples_prefix_and_ranks_continuations(sp_tokenizer):
    transform = TokenizeConversation(sp_tokenizer, template='vicuna_v1', num_image_tokens=3,
                                     add_generation_prompt=True)
    results = transform(dict(messages=MESSAGES, answer_prefix=PREFIX,
                             answer_candidates=['A) running', 'B) dancing']))
    assert results['prompt'].endswith(' ASSISTANT: Best option:(')
    assert results['candidate_ids'] == answer_token_ids(
        ['A) running', 'B) dancing'], sp_tokenizer, 'vicuna_v1', answer_prefix=PREFIX)
    plain = transform(dict(messages=MESSAGES, answer_candidates=['A) running', 'B) dancing']))
    assert plain['prompt'].endswith(' ASSISTANT:')
    assert plain['candidate_ids'] != results['candidate_ids']  # cached per prefix
    with pytest.raises(ValueError, match='NUL'):
        transform(dict(messages=MESSAGES, answer_prefix='a\x00b'))
