"""Multi-turn chat with images and clips: the one place a conversation becomes an answer.

:func:`chat` is stateless: messages (with ``<image>`` / ``<video>`` placeholders) plus the
visuals they reference, in placeholder order, give an answer, whole or streamed piece by
piece. :class:`ChatSession` keeps a conversation's history and visuals for the terminal demo
and the web app; the OpenAI-compatible server calls :func:`chat` directly.

The parts live in their own modules and are imported from here: input checking and
preparation in :mod:`mmllava.apis.chat_inputs`, streamed decoding in
:mod:`mmllava.apis.streaming`, the session in :mod:`mmllava.apis.chat_session`.

Example:
    >>> from mmllava.apis import ChatSession, get_model
    >>> session = ChatSession(get_model('configs/llava/llava-tiny_vqa.py'))
    >>> session.add_image('demo/demo.jpg')
    >>> answer = session.ask('What is the person doing?')
    >>> for piece in session.stream('And what is in the background?'):
    ...     print(piece, end='', flush=True)
"""
from typing import Iterator, Sequence, Union

import torch

from mmllava.conversation import stop_token_ids

from .chat_inputs import (
    IMAGE_PLACEHOLDER,
    VIDEO_PLACEHOLDER,
    VisualType,
    chat_template,
    prepare_chat_inputs,
)
from .streaming import IncrementalDecoder, stream_generate


def _generate_kwargs(model: torch.nn.Module, generate_kwargs: dict, length: int) -> dict:
    kwargs = dict(generate_kwargs)
    # A long chat meets the end of the context: answer in the room left, without a warning.
    room = model.max_length - length
    wanted = kwargs.get('max_new_tokens', model.generation_cfg.get('max_new_tokens'))
    if wanted is not None and wanted > room:
        kwargs['max_new_tokens'] = room
        if kwargs.get('min_new_tokens'):
            kwargs['min_new_tokens'] = min(kwargs['min_new_tokens'], room)
    if 'eos_token_id' not in kwargs:
        kwargs['eos_token_id'] = stop_token_ids(model.tokenizer, chat_template(model))
    return kwargs


def chat(model: torch.nn.Module, messages: Sequence[dict],
         images: Sequence[VisualType] = (), videos: Sequence[VisualType] = (),
         stream: bool = False, **generate_kwargs) -> Union[str, Iterator[str]]:
    """Answer the last user message of a conversation with images and clips.

    Inputs are checked before anything is generated, so a bad request raises here even when
    streaming (not at the first piece).

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model` (with a tokenizer).
        messages: Role/content dicts (an optional system message first, then user and
            assistant in turn, ending with the user); contents hold ``<image>`` / ``<video>``
            placeholders in the order of ``images`` / ``videos``.
        images: Image sources (paths, PIL images, (H, W, 3) uint8 arrays) in placeholder order.
        videos: Clip sources (video files, rawframe folders, (T, H, W, 3) uint8 arrays).
        stream (bool): Return an iterator of text pieces as they are generated (generation
            runs in a thread; closing the iterator early stops it).
        **generate_kwargs: transformers ``generate`` keywords (``max_new_tokens``,
            ``do_sample``, ``temperature``, ``top_p`` ...) over the model's ``generation_cfg``;
            greedy by default. Generation stops at the template's stop tokens.

    Returns:
        str | Iterator[str]: The answer (stripped), or pieces that join to exactly it.

    Raises:
        ValueError: See :func:`prepare_chat_inputs`.
    """
    if model.tokenizer is None:
        raise ValueError('chat needs a model with a tokenizer')
    inputs = prepare_chat_inputs(model, messages, images, videos)['inputs']
    return answer_inputs(model, inputs, stream, **generate_kwargs)


def answer_inputs(model: torch.nn.Module, inputs: dict, stream: bool = False,
                  **generate_kwargs) -> Union[str, Iterator[str]]:
    """:func:`chat`'s second half: the answer to inputs :func:`prepare_chat_inputs` made.

    The server prepares (decodes, tokenizes) outside its generation lock and answers with
    this under it; :func:`chat` is the two in a row, so both answer alike.

    Args:
        model: The LLaVA the inputs were prepared for.
        inputs (dict): ``prepare_chat_inputs(...)['inputs']``.
        stream (bool): Return an iterator of text pieces (see :func:`chat`).
        **generate_kwargs: transformers ``generate`` keywords, as :func:`chat` takes them.
    """
    kwargs = _generate_kwargs(model, generate_kwargs, inputs['input_ids'].shape[1])
    if stream:
        return stream_generate(model, inputs, kwargs)
    ids = model.generate(inputs['input_ids'], inputs.get('attention_mask'),
                         inputs.get('pixel_values'), inputs.get('visual_frames'),
                         image_sizes=inputs.get('image_sizes'), **kwargs)
    decoder = IncrementalDecoder(model.tokenizer, kwargs['eos_token_id'])
    return decoder.finish(ids[0].tolist())


# Last: the session answers through chat() above, and is imported from here too.
from .chat_session import ChatSession  # noqa: E402

__all__ = ['IMAGE_PLACEHOLDER', 'VIDEO_PLACEHOLDER', 'ChatSession', 'VisualType',
           'answer_inputs', 'chat', 'chat_template', 'prepare_chat_inputs']
