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


_PREFIX_MARK = '\x00'  # where an answer prefix ends inside the rendered last answer


def _render_with_prefix(template: ConversationTemplate, system: Optional[str],
                        turns: List[Turn], answer_prefix: str) -> List[Segment]:
    """Render with ``answer_prefix`` starting the last assistant turn (see
    :func:`render_conversation`): the template lays the prefix out as an answer's start
    (``ASSISTANT: {prefix}``, ``assistant\n{prefix}``), then the prefix is made prompt text
    (not trainable) and, for a generation prompt, everything after it is dropped."""
    if _PREFIX_MARK in answer_prefix:
        raise ValueError('answer_prefix must not hold a NUL character')
    question, answer = turns[-1]
    turns = turns[:-1] + [(question, answer_prefix + _PREFIX_MARK + (answer or ''))]
    out = []
    for seg in template.render(system, turns, False):
        if seg.kind != 'text' or _PREFIX_MARK not in seg.text:
            out.append(seg)
            continue
        head, tail = seg.text.split(_PREFIX_MARK, 1)
        out.append(Segment('text', head, False))  # joins the prompt text before it
        if answer is None:
            return out  # a generation prompt ends with the prefix
        out.append(Segment('text', tail, True))
    if answer is None:
        raise ValueError(f'Template {template.name!r} writes no assistant answer: it cannot '
                         'take an answer_prefix')
    return out


def render_conversation(messages: Sequence[dict], template: TemplateType,
                        add_generation_prompt: bool = False,
                        answer_prefix: Optional[str] = None) -> List[Segment]:
    """Render messages into the segments that both the prompt and the ids are made from.

    Args:
        messages: Role/content dicts.
        template: A template name, dict or :class:`ConversationTemplate`.
        add_generation_prompt (bool): End with the assistant's role tag.
        answer_prefix (str, optional): Text that starts the last assistant turn, laid out as
            the template lays out an answer's start (``" ASSISTANT: Best option:("``,
            ``"<|im_start|>assistant\nBest option:("``). It is prompt text, never trained:
            with ``add_generation_prompt`` the prompt ends with it and generation continues
            after it (MVBench's ``"Best option:("``); with a last assistant message, that
            message is what follows the prefix. The prefix's text is merged with the prompt
            text before it, so its ids are those of the whole text.

    Raises:
        ValueError: On malformed messages, or a generation prompt after an assistant message.
    """
    template = get_template(template)
    system, turns = _split_messages(messages)
    if add_generation_prompt and turns[-1][1] is not None:
        raise ValueError('add_generation_prompt needs the conversation to end with a user '
                         'message, but it ends with the assistant')
    if answer_prefix:
        return _render_with_prefix(template, system, list(turns), answer_prefix)
    return template.render(system, turns, add_generation_prompt)


def build_prompt(messages: Sequence[dict], template: TemplateType,
                 add_generation_prompt: bool = True,
                 answer_prefix: Optional[str] = None) -> str:
    """The exact text the LLM sees, each visual written as ``<image>`` / ``<video>``.

    The leading BOS is the tokenizer's and not written (as the original's ``get_prompt``).

    Args:
        messages: Role/content dicts.
        template: A template name, dict or :class:`ConversationTemplate`.
        add_generation_prompt (bool): End with the assistant's role tag (``' ASSISTANT:'``).
        answer_prefix (str, optional): Start of the assistant's turn
            (:func:`render_conversation`).
    """
    return ''.join(seg.text for seg in render_conversation(
        messages, template, add_generation_prompt, answer_prefix))


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
                          truncate: bool = False,
                          answer_prefix: Optional[str] = None) -> Dict[str, object]:
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
        answer_prefix (str, optional): Prompt text starting the last assistant turn, e.g.
            MVBench's ``"Best option:("``: a generation prompt ends with it (and ``prompt``
            shows it); a training conversation's last answer follows it (only the answer is
            learned). See :func:`render_conversation`.

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
    segments = render_conversation(messages, template, add_generation_prompt, answer_prefix)
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


def answer_token_ids(answers: Sequence[str], tokenizer, template: TemplateType,
                     answer_prefix: Optional[str] = None) -> List[List[int]]:
    """Each answer's ids as the assistant's reply (its end token included), as training makes
    them: the ids closed-set ranking scores (:meth:`mmllava.models.Llava.score_answers`).

    Each answer is tokenized inside a one-turn conversation with ``template`` and its
    trainable labels are kept, so the ids are exactly those the model learned to produce (and
    the end token keeps "walking" from being a prefix of "walking backward"). With
    ``answer_prefix`` (a prompt that ends with it, see :func:`tokenize_conversation`) each
    answer is the continuation after the prefix, encoded as text that goes on from it.
    """
    out = []
    for answer in answers:
        ids = tokenize_conversation(
            [dict(role='user', content='?'), dict(role='assistant', content=str(answer))],
            tokenizer, template, answer_prefix=answer_prefix)
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
