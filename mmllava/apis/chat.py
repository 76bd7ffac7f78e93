"""Multi-turn chat with images and clips: the one place a conversation becomes an answer.

:func:`chat` is stateless: messages (with ``<image>`` / ``<video>`` placeholders) plus the
visuals they reference, in placeholder order, give an answer, whole or streamed piece by
piece. :class:`ChatSession` keeps a conversation's history and visuals for the terminal demo
and the web app; the OpenAI-compatible server calls :func:`chat` directly.

Example:
    >>> from mmllava.apis import ChatSession, get_model
    >>> session = ChatSession(get_model('configs/llava/llava-tiny_vqa.py'))
    >>> session.add_image('demo/demo.jpg')
    >>> answer = session.ask('What is the person doing?')
    >>> for piece in session.stream('And what is in the background?'):
    ...     print(piece, end='', flush=True)
"""
import copy
import queue
import threading
import weakref
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import Compose
from PIL import Image
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from mmllava.conversation import ConversationTemplate, get_template, stop_token_ids
from mmllava.datasets.collate import llava_collate

from .inference import build_inference_pipeline

VisualType = Union[str, Path, Image.Image, np.ndarray]

IMAGE_PLACEHOLDER = '<image>'
VIDEO_PLACEHOLDER = '<video>'

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


class _QueueStreamer(BaseStreamer):
    """Put generated token ids on a queue; the first ``put`` (the prompt) is skipped."""

    def __init__(self, out: queue.Queue):
        self.out = out
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.out.put(('ids', value.reshape(-1).tolist()))

    def end(self) -> None:
        pass  # the thread reports the end itself, with the returned ids


class _Cancelled(StoppingCriteria):
    """Stop generating once the reader of a stream has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0], ), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


def _cut_at_stop(ids: List[int], stops: Sequence[int]) -> List[int]:
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i]
    return ids


class _IncrementalDecoder:
    """Turn a growing list of ids into text pieces that join to the final answer.

    Sentencepiece decodes a token's leading "▁" as a space only inside a text, so tokens are
    not decoded one by one: the whole prefix is decoded and the new suffix emitted. Trailing
    whitespace and an unfinished UTF-8 character (byte fallback gives U+FFFD) are held back
    until more text follows, so the pieces join to exactly ``decode(ids).strip()``.
    """

    def __init__(self, tokenizer, stops: Sequence[int]):
        self.tokenizer = tokenizer
        self.stops = set(stops)
        self.ids: List[int] = []
        self.emitted = ''
        self.stopped = False

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()

    def _emit(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ''  # an earlier piece decodes differently now: wait for the final text
        piece, self.emitted = text[len(self.emitted):], text
        return piece

    def add(self, ids: Sequence[int]) -> str:
        if self.stopped:
            return ''
        for token in ids:
            if token in self.stops:
                self.stopped = True
                break
            self.ids.append(token)
        stable = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        stable = stable.rstrip().rstrip('\ufffd')
        return self._emit(stable)

    def finish(self, ids: Optional[Sequence[int]] = None) -> str:
        if ids is not None:
            self.ids = _cut_at_stop(list(ids), self.stops)
        return self._emit(self.text())


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


def _stream(model: torch.nn.Module, inputs: dict, kwargs: dict) -> Iterator[str]:
    out: queue.Queue = queue.Queue()
    cancel = threading.Event()
    criteria = StoppingCriteriaList(kwargs.pop('stopping_criteria', None) or [])
    criteria.append(_Cancelled(cancel))

    def run():
        try:
            ids = model.generate(inputs['input_ids'], inputs.get('attention_mask'),
                                 inputs.get('pixel_values'), inputs.get('visual_frames'),
                                 streamer=_QueueStreamer(out), stopping_criteria=criteria,
                                 **kwargs)
            out.put(('done', ids[0].tolist()))
        except BaseException as e:  # handed to the reader, raised there
            out.put(('error', e))

    decoder = _IncrementalDecoder(model.tokenizer, kwargs['eos_token_id'])
    thread = threading.Thread(target=run, name='mmllava-chat-generate', daemon=True)
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == 'ids':
                piece = decoder.add(value)
            elif kind == 'done':
                piece = decoder.finish(value)
            else:
                raise value
            if piece:
                yield piece
            if kind == 'done':
                return
    finally:
        cancel.set()  # the reader stopped early (or finished): free the model
        thread.join()


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
    kwargs = _generate_kwargs(model, generate_kwargs, inputs['input_ids'].shape[1])
    if stream:
        return _stream(model, inputs, kwargs)
    ids = model.generate(inputs['input_ids'], inputs.get('attention_mask'),
                         inputs.get('pixel_values'), inputs.get('visual_frames'), **kwargs)
    decoder = _IncrementalDecoder(model.tokenizer, kwargs['eos_token_id'])
    return decoder.finish(ids[0].tolist())


class ChatSession:
    """A multi-turn conversation with a LLaVA: history, attached images and clips.

    Visuals added with :meth:`add_image` / :meth:`add_video` go with the next user message,
    their placeholders put before its text as LLaVA does (``'<image>\\nWhat is it?'``); later
    text-only questions keep every earlier visual in context.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        system (str, optional): A system message; ``None`` keeps the template's own.
        **generate_kwargs: Default transformers ``generate`` keywords for every answer.
    """

    def __init__(self, model: torch.nn.Module, system: Optional[str] = None,
                 **generate_kwargs):
        if model.tokenizer is None:
            raise ValueError('ChatSession needs a model with a tokenizer')
        self.model = model
        self.system = system
        self.generate_kwargs = generate_kwargs
        self.reset()

    def reset(self) -> None:
        """Forget the history, the visuals and any visual not yet sent."""
        self._messages: List[dict] = []
        self.images: List[VisualType] = []
        self.videos: List[VisualType] = []
        self._pending: List[tuple] = []

    @property
    def messages(self) -> List[dict]:
        """The history (system message first if given), visuals written as placeholders."""
        system = [] if self.system is None else [dict(role='system', content=self.system)]
        return copy.deepcopy(system + self._messages)

    @property
    def pending(self) -> List[str]:
        """Kinds (``'image'`` / ``'video'``) of visuals waiting for the next user message."""
        return [kind for kind, _ in self._pending]

    @staticmethod
    def _check_source(source: VisualType) -> None:
        if isinstance(source, (str, Path)) and not Path(source).exists():
            raise FileNotFoundError(f'No such file or folder: {str(source)!r}')

    def add_image(self, source: VisualType) -> None:
        """Attach an image (path, PIL image or (H, W, 3) array) to the next user message.

        Raises:
            FileNotFoundError: A path that does not exist.
            ValueError: A file that is not a readable image.
        """
        self._check_source(source)
        if isinstance(source, (str, Path)):
            # Read now, so a bad file is reported when attached, not at the next question.
            from mmllava.datasets.transforms.loading import load_image
            load_image(str(source))
        self._pending.append(('image', source))

    def add_video(self, source: VisualType) -> None:
        """Attach a clip (video file, rawframe folder or (T, H, W, 3) array) to the next message.

        Raises:
            FileNotFoundError: A path that does not exist.
            ValueError: A file or folder that holds no readable frames.
        """
        self._check_source(source)
        if isinstance(source, (str, Path)):
            from mmllava.datasets.transforms.video import load_video_frames
            load_video_frames(str(source), num_frames=1)  # one frame: cheap, proves it decodes
        self._pending.append(('video', source))

    def _request(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ValueError('Ask something: the question is empty')
        placeholders = ''.join(f'<{kind}>\n' for kind, _ in self._pending)
        user = dict(role='user', content=placeholders + text)
        images = self.images + [s for kind, s in self._pending if kind == 'image']
        videos = self.videos + [s for kind, s in self._pending if kind == 'video']
        return self.messages + [user], images, videos

    def _commit(self, messages: List[dict], images: list, videos: list, answer: str) -> None:
        self._messages.append(messages[-1])
        self._messages.append(dict(role='assistant', content=answer))
        self.images, self.videos, self._pending = images, videos, []

    def ask(self, text: str, **generate_kwargs) -> str:
        """Answer a question about everything so far (and the visuals just attached).

        Args:
            text (str): The question.
            **generate_kwargs: transformers ``generate`` keywords for this answer.

        Returns:
            str: The answer. The history keeps the question and the answer; on an error
            neither is kept and attached visuals stay pending.
        """
        messages, images, videos = self._request(text)
        answer = chat(self.model, messages, images, videos,
                      **{**self.generate_kwargs, **generate_kwargs})
        self._commit(messages, images, videos, answer)
        return answer

    def stream(self, text: str, **generate_kwargs) -> Iterator[str]:
        """As :meth:`ask`, yielding text pieces as they are generated.

        Inputs are checked at the call (a bad request raises before the first piece). The
        history gets the answer once the stream ends; a stream closed early keeps the part
        generated so far.
        """
        messages, images, videos = self._request(text)
        pieces = chat(self.model, messages, images, videos, stream=True,
                      **{**self.generate_kwargs, **generate_kwargs})

        def run():
            answer = []
            try:
                for piece in pieces:
                    answer.append(piece)
                    yield piece
            except GeneratorExit:
                self._commit(messages, images, videos, ''.join(answer))
                raise
            self._commit(messages, images, videos, ''.join(answer))

        return run()
