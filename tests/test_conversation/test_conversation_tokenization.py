"""Per-turn tokenization: ids equal the original LLaVA's, labels computed by hand."""
import re

import pytest

from mmllava.conversation import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    build_prompt,
    from_llava_conversations,
    get_template,
    stop_token_ids,
    tokenize_conversation,
)

IGN, IMG = IGNORE_INDEX, IMAGE_TOKEN_INDEX
TEMPLATES = ('plain', 'vicuna_v1', 'llava_v1', 'llava_llama_2', 'mistral_instruct', 'chatml',
             'qwen_1_5')


def msgs(*pairs, system=None):
    out = [] if system is None else [dict(role='system', content=system)]
    for i, content in enumerate(pairs):
        out.append(dict(role='user' if i % 2 == 0 else 'assistant', content=content))
    return out


CONVERSATIONS = [
    msgs('<image>\nWhat is the man doing?', 'He is running.'),
    msgs('<image>\nWhat is the man doing?', 'He is running.', 'Where?', 'In a park, 2 times!',
         'And then?', 'He jumps over a fence.'),
    msgs('Compare <image> and <image>.', 'The first is red.\nThe second is blue.',
         '<video>\nWhat happens in the video?', 'A dog runs.'),
    # Whitespace at the edges of contents: answers with a leading space or newline, a question
    # ending with spaces, and a system override.
    msgs('What is it?  ', ' A cat.', 'Sure?\n', '\nYes, sure. ', system='Be brief.'),
    msgs('<image>', 'A woman is dancing on a stage.'),
    msgs('No image here, 1234 digits.', 'OK: 5678.', system=''),
]


def pieces(tokenizer, ids):
    return [tokenizer.id_to_token(i) if i >= 0 else i for i in ids]


def original_ids(prompt, tokenizer, template, counts):
    """The original's way: the whole prompt split only at visual placeholders and special
    tokens, each text chunk encoded on its own (sentencepiece: with the dummy prefix)."""
    template = get_template(template)
    specials = dict(template.special_tokens)
    pattern = '|'.join(re.escape(s) for s in ['<image>', '<video>', *specials])
    ids = [tokenizer.bos_token_id] if template.add_bos else []
    counts = iter(counts)
    for chunk in re.split(f'({pattern})', prompt):
        if chunk in ('<image>', '<video>'):
            ids += [IMG] * next(counts)
        elif chunk in specials:
            token = specials[chunk]
            ids.append({'bos': tokenizer.bos_token_id, 'eos': tokenizer.eos_token_id}.get(
                token) or tokenizer.token_to_id(token))
        else:
            ids += tokenizer.encode(chunk)
    return ids


def hf_whole_text_ids(prompt, tokenizer, counts):
    """Hugging Face: the whole text tokenized at once (special tokens matched by the
    tokenizer), split only at visual placeholders."""
    ids, counts = [], iter(counts)
    for chunk in re.split('(<image>|<video>)', prompt):
        if chunk in ('<image>', '<video>'):
            ids += [IMG] * next(counts)
        elif chunk:
            ids += tokenizer.tokenizer.encode(chunk, add_special_tokens=False)
    return ids


@pytest.mark.parametrize('template', TEMPLATES)
@pytest.mark.parametrize('index', range(len(CONVERSATIONS)))
@pytest.mark.parametrize('generation', [False, True])
def test_ids_equal_the_originals_sentencepiece(sp_tokenizer, template, index, generation):
    messages = CONVERSATIONS[index]
    if generation:
        messages = messages[:-1]
    out = tokenize_conversation(messages, sp_tokenizer, template, num_visual_tokens=3,
                                add_generation_prompt=generation)
    prompt = build_prompt(messages, template, add_generation_prompt=generation)
    assert out['prompt'] == prompt
    counts = [3] * len(re.findall('<image>|<video>', prompt))
    expected = original_ids(prompt, sp_tokenizer, template, counts)
    assert pieces(sp_tokenizer, out['input_ids']) == pieces(sp_tokenizer, expected)
    assert len(out['labels']) == len(out['input_ids'])
    if generation:
        assert set(out['labels']) == {IGN}


@pytest.mark.parametrize('template', ['chatml', 'vicuna_v1'])
@pytest.mark.parametrize('index', range(len(CONVERSATIONS)))
def test_ids_equal_whole_text_hf(hf_tokenizer, template, index):
    messages = CONVERSATIONS[index]
    if index == 3:
        # A byte-level BPE merges "\n\n" across our split before an answer that starts with a
        # newline (chatml's "assistant\n" + "\nYes"): a documented limit.
        messages = messages[:-1] + [dict(role='assistant', content='Yes, sure. ')]
    if template == 'vicuna_v1':
        template = dict(type='vicuna_v1', add_bos=False, special_tokens=(('</s>', 'eos'),))
    out = tokenize_conversation(messages, hf_tokenizer, template, num_visual_tokens=2)
    prompt = build_prompt(messages, template, add_generation_prompt=False)
    if isinstance(template, dict):
        # The tiny BPE's EOS is <|im_end|>: written "</s>" by vicuna, so compare on that text.
        prompt = prompt.replace('</s>', '<|im_end|>')
    counts = [2] * len(re.findall('<image>|<video>', prompt))
    assert out['input_ids'] == hf_whole_text_ids(prompt, hf_tokenizer, counts)


def test_vicuna_two_turns_labels_by_hand(sp_tokenizer):
    messages = msgs('<image>\nWho runs?', 'A man.', 'Where?', 'In a park.', system='Be brief.')
    out = tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=2)
    assert out['prompt'] == ('Be brief. USER: <image>\nWho runs? ASSISTANT: A man.</s>'
                             'USER: Where? ASSISTANT: In a park.</s>')
    system_and_question = ['<s>', '▁B', 'e', '▁b', 'r', 'ie', 'f', '.', '▁USER', ':', '▁', IMG,
                           IMG, '▁', '<0x0A>', 'Wh', 'o', '▁run', 's', '?', '▁ASSISTANT', ':']
    answer1 = ['▁A', '▁man', '.', '</s>']
    question2 = ['▁USER', ':', '▁Where', '?', '▁ASSISTANT', ':']
    answer2 = ['▁', 'I', 'n', '▁a', '▁park', '.', '</s>']
    assert pieces(sp_tokenizer, out['input_ids']) == (
        system_and_question + answer1 + question2 + answer2)
    assert pieces(sp_tokenizer, out['labels']) == (
        [IGN] * len(system_and_question) + answer1 + [IGN] * len(question2) + answer2)


def test_llama_2_labels_by_hand(sp_tokenizer):
    messages = msgs('Who runs?', 'A man.', 'Where?', 'In a park.', system='Be brief.')
    out = tokenize_conversation(messages, sp_tokenizer, 'llava_llama_2')
    labels = pieces(sp_tokenizer, out['labels'])
    # Learned: each answer, its trailing space ("▁") and EOS; not "[/INST]" nor the "<s>" of
    # the next turn.
    trained = [p for p in labels if p != IGN]
    assert trained == ['▁A', '▁man', '.', '▁', '</s>', '▁', 'I', 'n', '▁a', '▁park', '.', '▁',
                       '</s>']
    ids = pieces(sp_tokenizer, out['input_ids'])
    assert ids[0] == '<s>' and ids.count('<s>') == 2 and ids.count('</s>') == 2
    second = ids.index('</s>') + 1
    assert ids[second:second + 4] == ['<s>', '▁[', 'INST', ']']
    assert labels[second] == IGN


def test_plain_labels_by_hand(sp_tokenizer):
    out = tokenize_conversation(msgs('Look: <image> and <video>.', 'A dog.'), sp_tokenizer,
                                'plain', num_visual_tokens=[1, 3])
    assert out['prompt'] == '<image><video>A dog.\n'
    assert pieces(sp_tokenizer, out['input_ids']) == ['<s>', IMG, IMG, IMG, IMG, '▁A', '▁dog',
                                                      '.', '<0x0A>']
    assert pieces(sp_tokenizer, out['labels']) == [IGN] * 5 + ['▁A', '▁dog', '.', '<0x0A>']


def test_chatml_labels(sp_tokenizer, hf_tokenizer):
    messages = msgs('<image>\nWhat is it?', 'A dog.')
    for tok in (sp_tokenizer, hf_tokenizer):
        out = tokenize_conversation(messages, tok, 'chatml', num_visual_tokens=1)
        im_end = tok.token_to_id('<|im_end|>')
        trained = [i for i in out['labels'] if i != IGN]
        # The answer and its <|im_end|> are learned; the newline after it is not.
        assert trained == tok.encode('A dog.', add_dummy_prefix=False) + [im_end]
        assert out['input_ids'][-1] != im_end and out['labels'][-1] == IGN
        assert out['input_ids'][0] == tok.token_to_id('<|im_start|>')  # no BOS
    assert stop_token_ids(hf_tokenizer, 'chatml') == [hf_tokenizer.eos_token_id]
    assert stop_token_ids(sp_tokenizer, 'chatml') == [2, 4]
    assert stop_token_ids(sp_tokenizer, 'vicuna_v1') == [2]


def test_visual_counts(sp_tokenizer):
    messages = msgs('<image> then <video> then <image>', 'Three.')
    out = tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=[2, 5, 1])
    ids = out['input_ids']
    runs = re.findall('I+', ''.join('I' if i == IMG else '.' for i in ids))
    assert [len(r) for r in runs] == [2, 5, 1]
    assert all(label == IGN for i, label in zip(ids, out['labels']) if i == IMG)
    with pytest.raises(ValueError, match='2 counts but the conversation has 3'):
        tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=[2, 5])
    with pytest.raises(ValueError, match='at least one token'):
        tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=0)
    text_only = tokenize_conversation(msgs('Hi?', 'Hello.'), sp_tokenizer, 'vicuna_v1',
                                      num_visual_tokens=[])
    assert IMG not in text_only['input_ids']


def test_max_length_and_truncation(sp_tokenizer):
    messages = msgs('<image>\nWhat?', 'A man runs.', 'Where?', 'In a park.')
    full = tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4)
    n = len(full['input_ids'])
    assert tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4,
                                 max_length=n) == full
    with pytest.raises(ValueError, match=f'{n} tokens, over max_length {n - 1}'):
        tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4,
                              max_length=n - 1)
    cut = tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4,
                                max_length=n - 3, truncate=True)
    assert cut['input_ids'] == full['input_ids'][:n - 3]
    assert cut['labels'] == full['labels'][:n - 3]
    first_label = next(i for i, label in enumerate(full['labels']) if label != IGN)
    with pytest.raises(ValueError, match='no trainable label'):
        tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4,
                              max_length=first_label, truncate=True)
    first_image = full['input_ids'].index(IMG)
    with pytest.raises(ValueError, match='cut a visual'):
        tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', num_visual_tokens=4,
                              max_length=first_image + 2, truncate=True)
    with pytest.raises(ValueError, match='generation prompt cannot be truncated'):
        tokenize_conversation(messages[:3], sp_tokenizer, 'vicuna_v1', num_visual_tokens=4,
                              add_generation_prompt=True, max_length=5, truncate=True)


def test_message_errors(sp_tokenizer):
    def tokenize(messages, **kwargs):
        return tokenize_conversation(messages, sp_tokenizer, 'vicuna_v1', **kwargs)

    with pytest.raises(ValueError, match='non-empty list'):
        tokenize([])
    with pytest.raises(ValueError, match='unknown role'):
        tokenize([dict(role='human', content='Hi')])
    with pytest.raises(ValueError, match=r"messages\[1\] has role 'user'"):
        tokenize(msgs('Hi') + msgs('Hi again'))
    with pytest.raises(ValueError, match='only first'):
        tokenize(msgs('Hi', 'Hello') + [dict(role='system', content='x')])
    with pytest.raises(ValueError, match='content must be a str'):
        tokenize([dict(role='user', content=None)])
    with pytest.raises(ValueError, match='nothing to train on'):
        tokenize(msgs('Hi'))
    with pytest.raises(ValueError, match='empty'):
        tokenize(msgs('Hi', ' '))
    with pytest.raises(ValueError, match='end with a user message'):
        tokenize(msgs('Hi', 'Hello'), add_generation_prompt=True)
    with pytest.raises(ValueError, match='no user message'):
        tokenize([dict(role='system', content='x')])
    with pytest.raises(ValueError, match="needs the token '<\\|x\\|>'"):
        tokenize_conversation(msgs('Hi', 'Hello'), sp_tokenizer,
                              dict(type='chatml', special_tokens=(('<|im_start|>', '<|x|>'),
                                                                  ('<|im_end|>', '<|y|>'))))


def test_from_llava_conversations():
    conversations = [dict(value='<image>\nWhat?', **{'from': 'human'}),
                     dict(value='A dog.', **{'from': 'gpt'})]
    assert from_llava_conversations(conversations) == msgs('<image>\nWhat?', 'A dog.')
    # As the original: a first turn from gpt is dropped.
    assert from_llava_conversations([dict(value='Hi!', **{'from': 'gpt'})] + conversations) == (
        msgs('<image>\nWhat?', 'A dog.'))
    assert from_llava_conversations(conversations[:1], training=False) == msgs('<image>\nWhat?')
    with pytest.raises(ValueError, match='no "gpt" turn'):
        from_llava_conversations(conversations[:1])
    with pytest.raises(ValueError, match=r'conversations\[1\]: unknown "from" \'bot\''):
        from_llava_conversations([conversations[0], dict(value='x', **{'from': 'bot'})])
    with pytest.raises(ValueError, match='"from" and "value"'):
        from_llava_conversations([dict(value='x')])
    with pytest.raises(ValueError, match='must be a str'):
        from_llava_conversations([dict(value=3, **{'from': 'human'})])
    with pytest.raises(ValueError, match="role 'assistant'"):
        from_llava_conversations(conversations + conversations[1:])
