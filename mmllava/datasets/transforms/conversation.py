"""Turn a sample's conversation into token ids, labels and the prompt text."""
from typing import Optional, Union

from mmcv.transforms import BaseTransform

from mmllava.conversation import (
    answer_token_ids,
    build_tokenizer,
    from_llava_conversations,
    get_template,
    tokenize_conversation,
)
from mmllava.registry import TRANSFORMS


@TRANSFORMS.register_module()
class TokenizeConversation(BaseTransform):
    """Tokenize a conversation turn by turn (:func:`~mmllava.conversation.tokenize_conversation`).

    Required keys: ``messages`` (role/content dicts) or ``conversations`` (LLaVA JSON turns).
    Optional keys: ``num_visual_tokens`` (list[int], one count per ``<image>``/``<video>``, in
    order; overrides ``num_image_tokens``), ``sample_id`` (named in errors),
    ``answer_candidates`` (list[str]: a closed set of answers to rank, e.g. the classes of an
    action dataset in test mode), ``answer_prefix`` (str: text that starts the assistant's
    turn, e.g. MVBench's ``"Best option:("``; overrides the ``answer_prefix`` argument).

    Added keys: ``input_ids`` (list[int]), ``labels`` (list[int]), ``prompt`` (str) and, with
    ``answer_candidates``, ``candidate_ids`` (each candidate's ids as the reply under this
    template, :func:`~mmllava.conversation.answer_token_ids`; made once per candidate set).

    With ``add_generation_prompt`` a final assistant message is the reference answer: it is
    left out of the prompt. With an answer prefix the prompt (and ``prompt``) ends with it, so
    generation continues after it, and each candidate is ranked as the continuation after it
    (:func:`~mmllava.conversation.tokenize_conversation`).

    Args:
        tokenizer: Anything :func:`~mmllava.conversation.build_tokenizer` takes (config dict,
            ``tokenizer.model`` path or directory, built tokenizer). Built once.
        template: Template name, dict or :class:`~mmllava.conversation.ConversationTemplate`.
        num_image_tokens (int): Placeholder ids per visual (576 for CLIP ViT-L/14-336).
        add_generation_prompt (bool): Inference: end with the assistant's tag, no labels.
        max_length (int, optional): Longest allowed ``input_ids``.
        truncate (bool): Cut training samples over ``max_length`` instead of raising.
        answer_prefix (str, optional): Text starting the last assistant turn (a sample's
            ``answer_prefix`` key overrides it).
    """

    def __init__(self, tokenizer, template: Union[str, dict] = 'vicuna_v1',
                 num_image_tokens: int = 576, add_generation_prompt: bool = False,
                 max_length: Optional[int] = None, truncate: bool = False,
                 answer_prefix: Optional[str] = None):
        if tokenizer is None:
            raise ValueError('TokenizeConversation needs a tokenizer (a config dict, a '
                             'tokenizer.model path or a built tokenizer)')
        self.tokenizer = build_tokenizer(tokenizer)
        self.template = get_template(template)
        self.num_image_tokens = num_image_tokens
        self.add_generation_prompt = add_generation_prompt
        self.max_length = max_length
        self.truncate = truncate
        self.answer_prefix = answer_prefix
        self._candidates = {}  # (answer prefix, tuple of answers) -> their ids

    def _messages(self, results: dict) -> list:
        if results.get('messages') is not None:
            messages = list(results['messages'])
        elif results.get('conversations') is not None:
            messages = from_llava_conversations(results['conversations'],
                                                training=not self.add_generation_prompt)
        else:
            raise KeyError('needs "messages" or "conversations"')
        if (self.add_generation_prompt and messages
                and isinstance(messages[-1], dict) and messages[-1].get('role') == 'assistant'):
            messages = messages[:-1]
        return messages

    def transform(self, results: dict) -> dict:
        """Add ``input_ids``, ``labels`` and ``prompt`` to ``results``."""
        try:
            counts = results.get('num_visual_tokens')
            prefix = results.get('answer_prefix', self.answer_prefix)
            out = tokenize_conversation(
                self._messages(results), self.tokenizer, self.template,
                num_visual_tokens=self.num_image_tokens if counts is None else list(counts),
                add_generation_prompt=self.add_generation_prompt,
                max_length=self.max_length, truncate=self.truncate, answer_prefix=prefix)
        except (ValueError, KeyError) as e:
            sample = results.get('sample_id')
            where = f'sample {sample!r}: ' if sample is not None else ''
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ValueError(f'TokenizeConversation: {where}{message}') from e
        results.update(out)
        candidates = results.get('answer_candidates')
        if candidates is not None:
            key = tuple(str(c) for c in candidates)
            if not key:
                raise ValueError('TokenizeConversation: answer_candidates is empty')
            if (prefix, key) not in self._candidates:
                self._candidates[prefix, key] = answer_token_ids(
                    key, self.tokenizer, self.template, answer_prefix=prefix)
            results['candidate_ids'] = self._candidates[prefix, key]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(tokenizer={self.tokenizer!r}, '
                f'template={self.template.name!r}, num_image_tokens={self.num_image_tokens}, '
                f'add_generation_prompt={self.add_generation_prompt}, '
                f'max_length={self.max_length}, truncate={self.truncate})')
