"""Prompt building and per-turn tokenization of conversations.

Messages are dicts ``{'role': 'system' | 'user' | 'assistant', 'content': str}``; contents may
hold ``<image>`` and ``<video>`` placeholders. A template renders them into segments (see
:mod:`.templates`); the prompt text and the ids both come from that one rendering.

Token ids are made per segment, with no length arithmetic: BOS and EOS ids are inserted
explicitly, each visual placeholder becomes ``n`` copies of :data:`IMAGE_TOKEN_INDEX`, and each
run of text between them is encoded on its own. Labels keep the ids of the trainable segments
(the answers and the token that ends them) and are :data:`IGNORE_INDEX` elsewhere.

Why the ids equal the original LLaVA's: the original encodes the whole prompt split only at
``<image>`` and at special tokens, every chunk with sentencepiece's dummy prefix "▁". We split
a chunk once more, before each answer. Where the template puts a space there (``ASSISTANT: a``,
``[/INST] a``), the answer's chunk drops that space and its dummy prefix stands for it:
sentencepiece starts a new word at a space anyway, so the ids are the same. Where there is no
space (chatml's ``assistant\\n``), the answer is encoded without the dummy prefix.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmllava.structures import IGNORE_INDEX, IMAGE_TOKEN_INDEX

from .templates import ConversationTemplate, Segment, Turn, get_template

ROLES = ('system', 'user', 'assistant')
_LLAVA_ROLES = {'human': 'user', 'user': 'user', 'gpt': 'assistant', 'assistant': 'assistant',
                'system': 'system'}

TemplateType = Union[str, dict, ConversationTemplate]


# --------------------------------------------------------------------------- messages
def from_llava_conversations(conversations: Sequence[dict],
                             training: bool = True) -> List[dict]:
    """Convert LLaVA JSON turns ``[{'from': 'human' | 'gpt', 'value': str}, ...]`` to messages.

    As the original, a first turn from ``gpt`` (some ShareGPT samples) is dropped.

    Args:
        conversations: The ``conversations`` list of a LLaVA sample.
        training (bool): Require at least one ``gpt`` turn (something to learn).

    Raises:
        ValueError: On an unknown ``from``, a value that is not text, turns that do not
            alternate human/gpt, or no gpt turn when training.
    """
    if not isinstance(conversations, (list, tuple)) or not conversations:
        raise ValueError(f'conversations must be a non-empty list, got {conversations!r}')
    messages = []
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict) or 'from' not in turn or 'value' not in turn:
            raise ValueError(f'conversations[{i}] must be a dict with "from" and "value", '
                             f'got {turn!r}')
        role = _LLAVA_ROLES.get(str(turn['from']).lower())
        if role is None:
            raise ValueError(f'conversations[{i}]: unknown "from" {turn["from"]!r}; expected '
                             f'"human" or "gpt"')
        if not isinstance(turn['value'], str):
            raise ValueError(f'conversations[{i}]: "value" must be a str, got '
                             f'{type(turn["value"]).__name__}')
        messages.append(dict(role=role, content=turn['value']))
    first = 1 if messages[0]['role'] == 'system' else 0
    if len(messages) > first and messages[first]['role'] == 'assistant':
        del messages[first]
    if training and not any(m['role'] == 'assistant' for m in messages):
        raise ValueError('conversations have no "gpt" turn: nothing to train on')
    _split_messages(messages)  # alternation errors now, with LLaVA's indices close by
    return messages


def _split_messages(messages: Sequence[dict]) -> Tuple[Optional[str], List[Turn]]:
    """Validate messages and pair them into ``(user, assistant)`` turns."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f'messages must be a non-empty list, got {messages!r}')
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or 'role' not in msg or 'content' not in msg:
            raise ValueError(f'messages[{i}] must be a dict with "role" and "content", '
                             f'got {msg!r}')
        if msg['role'] not in ROLES:
            raise ValueError(f'messages[{i}]: unknown role {msg["role"]!r}; expected one of '
                             f'{ROLES} (LLaVA "from" fields: use from_llava_conversations)')
        if not isinstance(msg['content'], str):
            raise ValueError(f'messages[{i}]: content must be a str, got '
                             f'{type(msg["content"]).__name__}')
    system = None
    start = 0
    if messages[0]['role'] == 'system':
        system, start = messages[0]['content'], 1
    turns = []
    for i in range(start, len(messages)):
        expected = 'user' if (i - start) % 2 == 0 else 'assistant'
        role = messages[i]['role']
        if role != expected:
            where = 'only first' if role == 'system' else f'expected {expected!r}'
            raise ValueError(f'messages[{i}] has role {role!r} ({where}): a conversation is an '
                             'optional system message, then user and assistant in turn')
        if role == 'user':
            turns.append([messages[i]['content'], None])
        else:
            turns[-1][1] = messages[i]['content']
    if not turns:
        raise ValueError('messages hold no user message')
    return system, [tuple(t) for t in turns]


def render_conversation(messages: Sequence[dict], template: TemplateType,
                        add_generation_prompt: bool = False) -> List[Segment]:
    """Render messages into the segments that both the prompt and the ids are made from.

    Raises:
        ValueError: On malformed messages, or a generation prompt after an assistant message.
    """
    template = get_template(template)
    system, turns = _split_messages(messages)
    if add_generation_prompt and turns[-1][1] is not None:
        raise ValueError('add_generation_prompt needs the conversation to end with a user '
                         'message, but it ends with the assistant')
    return template.render(system, turns, add_generation_prompt)


def build_prompt(messages: Sequence[dict], template: TemplateType,
                 add_generation_prompt: bool = True) -> str:
    """The exact text the LLM sees, each visual written as ``<image>`` / ``<video>``.

    The leading BOS is the tokenizer's and not written (as the original's ``get_prompt``).

    Args:
        messages: Role/content dicts.
        template: A template name, dict or :class:`ConversationTemplate`.
        add_generation_prompt (bool): End with the assistant's role tag (``' ASSISTANT:'``).
    """
    return ''.join(seg.text for seg in
                   render_conversation(messages, template, add_generation_prompt))


# --------------------------------------------------------------------------- token ids
def _special_id(seg: Segment, tokenizer, template: ConversationTemplate) -> int:
    if seg.token in ('bos', 'eos'):
        token_id = getattr(tokenizer, f'{seg.token}_token_id', None)
        if token_id is None:
            raise ValueError(f'Template {template.name!r} needs a {seg.token.upper()} token; '
                             f'the tokenizer has none')
        return token_id
    try:
        return tokenizer.token_to_id(seg.token)
    except KeyError as e:
        raise ValueError(f'Template {template.name!r} needs the token {seg.token!r}, which the '
                         f'tokenizer lacks') from e


def _visual_counts(num_visual_tokens: Union[int, Sequence[int]], num_visuals: int) -> List[int]:
    if isinstance(num_visual_tokens, int):
        counts = [num_visual_tokens] * num_visuals
    else:
        counts = [int(n) for n in num_visual_tokens]
        if len(counts) != num_visuals:
            raise ValueError(f'num_visual_tokens gives {len(counts)} counts but the conversation '
                             f'has {num_visuals} <image>/<video> placeholders')
    if any(n < 1 for n in counts):
        raise ValueError(f'Every visual needs at least one token, got {counts}')
    return counts


def _encode_segments(segments: List[Segment], tokenizer, template: ConversationTemplate,
                     counts: List[int]) -> Tuple[List[int], List[int]]:
    ids, labels = [], []
    visual = 0
    i = 0
    while i < len(segments):
        seg = segments[i]
        if seg.kind == 'text':
            # A run of text with one trainability is one chunk, as the original encodes it.
            text = seg.text
            j = i + 1
            while (j < len(segments) and segments[j].kind == 'text'
                   and segments[j].trainable == seg.trainable):
                text += segments[j].text
                j += 1
            continues = i > 0 and segments[i - 1].kind == 'text'
            if continues and tokenizer.dummy_prefix:
                # A split inside the original's chunk: see the module docstring.
                if text.startswith(' '):
                    chunk = tokenizer.encode(text[1:])
                else:
                    chunk = tokenizer.encode(text, add_dummy_prefix=False)
            else:
                chunk = tokenizer.encode(text)
            i = j
        elif seg.kind == 'special':
            chunk = [_special_id(seg, tokenizer, template)]
            i += 1
        else:
            chunk = [IMAGE_TOKEN_INDEX] * counts[visual]
            visual += 1
            i += 1
        ids += chunk
        labels += chunk if seg.trainable and seg.kind != 'visual' else [IGNORE_INDEX] * len(chunk)
    return ids, labels


def tokenize_conversation(messages: Sequence[dict], tokenizer, template: TemplateType,
                          num_visual_tokens: Union[int, Sequence[int]] = 1,
                          add_generation_prompt: bool = False,
                          max_length: Optional[int] = None,
                          truncate: bool = False) -> Dict[str, object]:
    """Token ids and labels of a conversation, made turn by turn.

    Args:
        messages: Role/content dicts (see :func:`from_llava_conversations` for LLaVA JSON).
        tokenizer: A tokenizer of :mod:`.tokenizer` (anything with its interface).
        template: A template name, dict or :class:`ConversationTemplate`.
        num_visual_tokens (int | list[int]): Placeholder ids per ``<image>``/``<video>``: one
            count for all, or one per placeholder in order of appearance.
        add_generation_prompt (bool): Inference: end with the assistant's role tag; labels are
            then all :data:`IGNORE_INDEX`. Training (``False``) needs an assistant message.
        max_length (int, optional): Longest allowed ``input_ids``.
        truncate (bool): Training only: cut ids over ``max_length`` instead of raising.

    Returns:
        dict: ``input_ids`` (list[int]), ``labels`` (list[int], same length) and ``prompt``
        (str, :func:`build_prompt`'s text).

    Raises:
        ValueError: On malformed messages, visual counts that do not match the placeholders,
            an empty answer or none to train on, a tokenizer that lacks a template's token,
            ids longer than ``max_length`` (or, when truncating, a cut that would remove every
            trainable label or split a visual).
    """
    template = get_template(template)
    segments = render_conversation(messages, template, add_generation_prompt)
    if not add_generation_prompt:
        answers = [m for m in messages if m['role'] == 'assistant']
        if not answers:
            raise ValueError('No assistant message: nothing to train on (for inference set '
                             'add_generation_prompt=True)')
        if any(not m['content'].strip() for m in answers):
            raise ValueError('An assistant message is empty')
    counts = _visual_counts(num_visual_tokens, sum(s.kind == 'visual' for s in segments))
    ids, labels = _encode_segments(segments, tokenizer, template, counts)
    if add_generation_prompt:
        labels = [IGNORE_INDEX] * len(ids)
    if max_length is not None and len(ids) > max_length:
        if not truncate or add_generation_prompt:
            why = ('a generation prompt cannot be truncated' if truncate else
                   'set truncate=True to cut training samples')
            raise ValueError(f'The conversation is {len(ids)} tokens, over max_length '
                             f'{max_length} ({why})')
        what = f'Truncating {len(ids)} tokens to max_length {max_length}'
        if IMAGE_TOKEN_INDEX in ids[max_length:]:
            raise ValueError(f'{what} would cut a visual placeholder')
        ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise ValueError(f'{what} leaves no trainable label')
    prompt = ''.join(seg.text for seg in segments)
    return dict(input_ids=ids, labels=labels, prompt=prompt)


def answer_token_ids(answers: Sequence[str], tokenizer,
                     template: TemplateType) -> List[List[int]]:
    """Each answer's ids as the assistant's reply (its end token included), as training makes
    them: the ids closed-set ranking scores (:meth:`mmllava.models.Llava.score_answers`).

    Each answer is tokenized inside a one-turn conversation with ``template`` and its
    trainable labels are kept, so the ids are exactly those the model learned to produce (and
    the end token keeps "walking" from being a prefix of "walking backward").
    """
    out = []
    for answer in answers:
        ids = tokenize_conversation(
            [dict(role='user', content='?'), dict(role='assistant', content=str(answer))],
            tokenizer, template)
        out.append([t for t in ids['labels'] if t != IGNORE_INDEX])
    return out


def stop_token_ids(tokenizer, template: TemplateType) -> List[int]:
    """Ids that end an answer under ``template`` (EOS, and chatml's ``<|im_end|>``)."""
    template = get_template(template)
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    stop = template.stop_token
    if stop is not None and stop not in ('bos', 'eos'):
        token_id = tokenizer.token_to_id(stop)
        if token_id not in ids:
            ids.append(token_id)
    return ids
