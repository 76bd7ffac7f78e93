"""A conversation with images and clips turned into a LLaVA's inputs, checked on the way.

:func:`prepare_chat_inputs` is the one place chat input is validated, so the stateless
:func:`mmllava.apis.chat.chat`, :class:`mmllava.apis.chat.ChatSession` and the
OpenAI-compatible server refuse the same mistakes with the same words.
"""
import weakref
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from mmengine.dataset import Compose
from PIL import Image

from mmllava.conversation import ConversationTemplate, get_template
from mmllava.datasets.collate import llava_collate
from mmllava.structures import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER

from .pipeline import build_inference_pipeline

VisualType = Union[str, Path, Image.Image, np.ndarray]


# One pipeline per model: building it per request would rebuild transforms each time.
_PIPELINES: 'weakref.WeakKeyDictionary[torch.nn.Module, Compose]' = weakref.WeakKeyDictionary()


def chat_template(model: torch.nn.Module) -> ConversationTemplate:
    """The conversation template of a model: its test pipeline's ``TokenizeConversation``'s.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model` (it carries ``model.cfg``).
    """
    for step in model.cfg.get('test_pipeline') or []:
        if step['type'] == 'TokenizeConversation':
            return get_template(step.get('template', 'vicuna_v1'))
    raise ValueError('The config has no test_pipeline with a TokenizeConversation step: no '
                     'conversation template to chat with')


def _pipeline(model: torch.nn.Module) -> Compose:
    pipeline = _PIPELINES.get(model)
    if pipeline is None:
        pipeline = _PIPELINES[model] = build_inference_pipeline(model)
    return pipeline


def _count(messages: Sequence[dict], placeholder: str) -> int:
    return sum(str(m.get('content', '')).count(placeholder) for m in messages
               if isinstance(m, dict))


def prepare_chat_inputs(model: torch.nn.Module, messages: Sequence[dict],
                        images: Sequence[VisualType] = (),
                        videos: Sequence[VisualType] = ()) -> dict:
    """Check a conversation and turn it into the model's inputs.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        messages: Role/content dicts ending with a user message; contents hold one ``<image>``
            per image and one ``<video>`` per clip, in the order of ``images`` / ``videos``.
        images: Image sources (paths, PIL images, (H, W, 3) uint8 arrays) in placeholder order.
        videos: Clip sources (video files, rawframe folders, (T, H, W, 3) arrays) in order.

    Returns:
        dict: ``inputs`` (``input_ids``, ``attention_mask``, ``pixel_values``,
        ``visual_frames`` on the model's device, batch of one) and ``prompt`` (the exact text
        given to the LLM, visuals written as placeholders).

    Raises:
        ValueError: Malformed messages, a conversation that does not end with a user message,
            placeholders that do not match the visuals, a visual that cannot be read, or a
            prompt that leaves no room for an answer in the model's context.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f'messages must be a non-empty list, got {messages!r}')
    last = messages[-1]
    if not isinstance(last, dict) or last.get('role') != 'user':
        raise ValueError('The conversation must end with a user message to answer')
    images, videos = list(images), list(videos)
    for placeholder, visuals, what in ((IMAGE_PLACEHOLDER, images, 'image'),
                                       (VIDEO_PLACEHOLDER, videos, 'video')):
        found = _count(messages, placeholder)
        if found != len(visuals):
            raise ValueError(f'The messages hold {found} {placeholder} placeholder(s) but '
                             f'{len(visuals)} {what}(s) were given: each {what} needs one '
                             f'{placeholder} in the text, in the same order')
    sample = dict(sample_id='chat', messages=[dict(m) for m in messages], images=images,
                  videos=videos)
    try:
        packed = _pipeline(model)(sample)
    except (FileNotFoundError, TypeError) as e:
        # A missing file or a wrong kind of input is the caller's mistake, like a bad message.
        raise ValueError(str(e)) from e
    length = len(packed['inputs']['input_ids'])
    if length >= model.max_length:
        raise ValueError(f'The conversation is {length} tokens long (image tokens included): '
                         f'it leaves no room for an answer in the model context of '
                         f'{model.max_length} tokens. Start a new conversation or send fewer '
                         f'images, clips or turns')
    data = model.data_preprocessor(llava_collate([packed]), False)
    sample_meta = data['data_samples'][0]
    prompt = sample_meta.metainfo.get('prompt', sample_meta.get('prompt')) \
        if sample_meta is not None else packed.get('prompt')
    return dict(inputs=data['inputs'], prompt=prompt)
