"""Chat templates: how a conversation is written for the LLM.

A template renders a conversation into one list of :class:`Segment` s: text pieces, special
tokens and visual placeholders, each flagged trainable or not. The prompt text
(:func:`~mmllava.conversation.build_prompt`) and the token ids
(:func:`~mmllava.conversation.tokenize_conversation`) both come from that one rendering, so
they can never disagree.

The strings are the original LLaVA's (``llava/conversation.py``); ``chatml`` is Qwen's, and
``mistral_instruct`` and ``qwen_1_5`` are LLaVA-NeXT's (its ``llava/conversation.py``).
"""
import dataclasses
import re
from typing import List, Optional, Sequence, Tuple, Union

from mmllava.registry import TEMPLATES
from mmllava.structures import VISUAL_PLACEHOLDERS

_VISUAL_SPLIT = re.compile('(' + '|'.join(re.escape(p) for p in VISUAL_PLACEHOLDERS) + ')')

# Conversation turns as the templates take them: (user content, assistant content or None).
Turn = Tuple[str, Optional[str]]


@dataclasses.dataclass(frozen=True)
class Segment:
    """One piece of a rendered conversation.

    Args:
        kind (str): ``'text'``, ``'special'`` (one token) or ``'visual'`` (a placeholder).
        text (str): How the piece reads in the prompt (``''`` for the BOS the tokenizer adds).
        trainable (bool): Whether its tokens are learned (labels kept).
        token (str, optional): For ``'special'``: ``'bos'``, ``'eos'`` or the token's string
            (``'<|im_end|>'``), looked up in the tokenizer.
    """
    kind: str
    text: str
    trainable: bool = False
    token: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ConversationTemplate:
    """A chat template.

    Args:
        name (str): Registry name.
        style (str): Layout: ``'plain'``, ``'two'`` (vicuna/llava v1), ``'llama_2'`` or
            ``'chatml'``.
        system (str): Default system text; a system message overrides it.
        roles (tuple[str, str]): User and assistant role names as written in the prompt.
        sep (str): Separator after a user turn (``'two'``), after a caption (``'plain'``) or
            between chatml turns.
        sep2 (str, optional): What ends an assistant answer as written in the prompt
            (``'</s>'``, ``'<|im_end|>'``).
        add_bos (bool): Whether the tokenizer's BOS starts the ids (LLaMA yes, chatml no).
        special_tokens (tuple): ``(string, token)`` pairs: strings of the prompt that are
            single tokens. ``token`` is ``'bos'``, ``'eos'`` or the string itself.
        turn_start (str): chatml's ``<|im_start|>``.
    """
    name: str
    style: str
    system: str = ''
    roles: Tuple[str, str] = ('USER', 'ASSISTANT')
    sep: str = ' '
    sep2: Optional[str] = None
    add_bos: bool = True
    special_tokens: Tuple[Tuple[str, str], ...] = ()
    turn_start: str = ''

    def __post_init__(self):
        if self.style not in _RENDERERS:
            raise ValueError(f'Unknown template style {self.style!r}; known: '
                             f'{sorted(_RENDERERS)}')

    def special(self, string: str, trainable: bool = False) -> Segment:
        """The special-token segment written as ``string`` in the prompt."""
        token = dict(self.special_tokens).get(string)
        if token is None:
            raise KeyError(f'{string!r} is not a special token of template {self.name!r}')
        return Segment('special', string, trainable, token)

    @property
    def stop_token(self) -> Optional[str]:
        """The token that ends an answer (``'eos'`` or a token string); ``None`` for plain."""
        if self.sep2 is None:
            return None
        return dict(self.special_tokens).get(self.sep2)

    def render(self, system: Optional[str], turns: Sequence[Turn],
               add_generation_prompt: bool = False) -> List[Segment]:
        """Render a conversation into segments (visual placeholders split out).

        Args:
            system (str, optional): System text; ``None`` uses the template's.
            turns: ``(user, assistant)`` pairs; only the last assistant may be ``None``.
            add_generation_prompt (bool): End with the assistant's role tag.
        """
        system = self.system if system is None else system
        segments = _RENDERERS[self.style](self, system, list(turns), add_generation_prompt)
        out = []
        for seg in segments:
            if seg.kind != 'text':
                out.append(seg)
                continue
            for i, piece in enumerate(_VISUAL_SPLIT.split(seg.text)):
                if i % 2:
                    out.append(Segment('visual', piece))  # never trainable
                elif piece:
                    out.append(Segment('text', piece, seg.trainable))
        return out


def _text(text: str, trainable: bool = False) -> Segment:
    return Segment('text', text, trainable)


def _bos(template: ConversationTemplate) -> List[Segment]:
    # The first BOS is the tokenizer's, not text of the prompt (as in the original get_prompt).
    return [Segment('special', '', False, 'bos')] if template.add_bos else []


def _render_two(t: ConversationTemplate, system: str, turns: List[Turn],
                gen: bool) -> List[Segment]:
    # "{system} USER: {q} ASSISTANT: {a}</s>USER: {q} ASSISTANT:"
    user, assistant = t.roles
    segs = _bos(t)
    head = system + t.sep
    for question, answer in turns:
        head += f'{user}: {question}{t.sep}'
        if answer is None and not gen:
            break
        # The answer's leading space belongs to the answer: for a sentencepiece tokenizer it
        # is the dummy prefix of the answer's chunk, which gives the whole-text ids.
        segs.append(_text(head + f'{assistant}:'))
        head = ''
        if answer is not None:
            segs += [_text(' ' + answer, True), t.special(t.sep2, True)]
    if head:
        segs.append(_text(head))
    return segs


def _render_llama_2(t: ConversationTemplate, system: str, turns: List[Turn],
                    gen: bool) -> List[Segment]:
    # "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{q} [/INST] {a} </s>{sep}[INST] {q} [/INST]": sep
    # is "<s>" for llava_llama_2 and "" for mistral_instruct; no system, no <<SYS>> block.
    segs = _bos(t)
    for i, (question, answer) in enumerate(turns):
        if i == 0 and system:
            question = f'<<SYS>>\n{system}\n<</SYS>>\n\n{question}'
        elif i > 0 and t.sep:
            segs.append(t.special(t.sep))
        segs.append(_text(f'[INST] {question} [/INST]'))
        if answer is not None:
            segs += [_text(f' {answer} ', True), t.special(t.sep2, True)]
    return segs  # the generation prompt is the "[/INST]" already written


def _render_chatml(t: ConversationTemplate, system: str, turns: List[Turn],
                   gen: bool) -> List[Segment]:
    # "<|im_start|>system\n{s}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n
    #  <|im_start|>assistant\n{a}<|im_end|>\n"; the answer and its <|im_end|> are learned, the
    # newline after it is the next turn's (the model stops at <|im_end|>).
    user, assistant = t.roles
    start, end = t.special(t.turn_start), t.sep2
    segs = _bos(t)
    if system:
        segs += [start, _text(f'system\n{system}'), t.special(end), _text(t.sep)]
    for question, answer in turns:
        segs += [start, _text(f'{user}\n{question}'), t.special(end), _text(t.sep)]
        if answer is not None:
            segs += [start, _text(f'{assistant}\n'), _text(answer, True), t.special(end, True),
                     _text(t.sep)]
        elif gen:
            segs += [start, _text(f'{assistant}\n')]
    return segs


def _render_plain(t: ConversationTemplate, system: str, turns: List[Turn],
                  gen: bool) -> List[Segment]:
    # "<image>{caption}\n": the user's text is dropped, its visuals kept; loss on the caption
    # and its "\n" (there is no EOS in the original's pretraining data).
    segs = _bos(t)
    if system:
        segs.append(_text(system))
    for question, answer in turns:
        segs += [Segment('visual', v) for v in _VISUAL_SPLIT.findall(question)]
        if answer is not None:
            segs.append(_text(answer + t.sep, True))
    return segs


_RENDERERS = dict(two=_render_two, llama_2=_render_llama_2, chatml=_render_chatml,
                  plain=_render_plain)

_LLAMA_SPECIALS = (('<s>', 'bos'), ('</s>', 'eos'))
_VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the user's "
                  "questions.")

BUILTIN_TEMPLATES = (
    ConversationTemplate(name='plain', style='plain', system='', roles=('', ''), sep='\n'),
    ConversationTemplate(name='vicuna_v1', style='two', system=_VICUNA_SYSTEM,
                         roles=('USER', 'ASSISTANT'), sep=' ', sep2='</s>',
                         special_tokens=_LLAMA_SPECIALS),
    ConversationTemplate(name='llava_v1', style='two',
                         system=_VICUNA_SYSTEM.replace('user', 'human'),
                         roles=('USER', 'ASSISTANT'), sep=' ', sep2='</s>',
                         special_tokens=_LLAMA_SPECIALS),
    ConversationTemplate(name='llava_llama_2', style='llama_2',
                         system='You are a helpful language and vision assistant. You are able '
                         'to understand the visual content that the user provides, and assist '
                         'the user with a variety of tasks using natural language.',
                         roles=('USER', 'ASSISTANT'), sep='<s>', sep2='</s>',
                         special_tokens=_LLAMA_SPECIALS),
    # LLaVA-NeXT's mistral_instruct (LLaVA-1.6 Mistral-7B): llama_2 layout, no system text and
    # nothing between turns.
    ConversationTemplate(name='mistral_instruct', style='llama_2', system='',
                         roles=('USER', 'ASSISTANT'), sep='', sep2='</s>',
                         special_tokens=_LLAMA_SPECIALS),
    ConversationTemplate(name='chatml', style='chatml', system='You are a helpful assistant.',
                         roles=('user', 'assistant'), sep='\n', sep2='<|im_end|>',
                         add_bos=False, turn_start='<|im_start|>',
                         special_tokens=(('<|im_start|>', '<|im_start|>'),
                                         ('<|im_end|>', '<|im_end|>'))),
)
# LLaVA-NeXT's qwen_1_5 (OneVision, LLaVA-Video): chatml with Qwen's default system text.
BUILTIN_TEMPLATES += (dataclasses.replace(BUILTIN_TEMPLATES[-1], name='qwen_1_5'),)


def _register(template: ConversationTemplate) -> None:
    # mmengine registers classes and functions only: register a builder of the instance.
    def builder():
        return template

    builder.__name__ = template.name
    TEMPLATES.register_module(name=template.name, module=builder)


for _template in BUILTIN_TEMPLATES:
    _register(_template)


def get_template(template: Union[str, dict, ConversationTemplate]) -> ConversationTemplate:
    """Look a template up.

    Args:
        template: A registered name, a template, or a dict with ``type`` (a name) and fields
            to change, e.g. ``dict(type='vicuna_v1', system='...')``.
    """
    if isinstance(template, ConversationTemplate):
        return template
    overrides = {}
    if isinstance(template, dict):
        overrides = dict(template)
        template = overrides.pop('type', None)
    if not isinstance(template, str):
        raise TypeError(f'A template is a name, a dict or a ConversationTemplate, got '
                        f'{type(template).__name__}')
    builder = TEMPLATES.get(template)
    if builder is None:
        raise KeyError(f'Unknown conversation template {template!r}; known: '
                       f'{sorted(TEMPLATES.module_dict)}')
    result = builder() if not isinstance(builder, ConversationTemplate) else builder
    return dataclasses.replace(result, **overrides) if overrides else result
