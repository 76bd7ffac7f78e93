"""The model behind the OpenAI-compatible server: one answer at a time, with its usage.

:class:`ChatCompletionService` turns a :class:`~mmllava.apis.openai_protocol.ChatRequest` into
a ``chat.completion`` body or a sequence of ``chat.completion.chunk`` bodies by calling
:func:`mmllava.apis.chat.chat`, so the server answers exactly as the Python API does. It is
synchronous and blocking; the HTTP layer runs it off its event loop.
"""
import logging
import threading
import time
from typing import Iterator

import torch

from .openai_protocol import (
    APIError,
    ChatRequest,
    ChunkWriter,
    completion,
    models_list,
    parse_request,
    usage,
)

logger = logging.getLogger(__name__)


class _CountSteps:
    """A no-op logits processor counting generation steps: the completion tokens."""

    def __init__(self):
        self.steps = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        return scores


class ChatCompletionService:
    """The model behind a lock: one generation at a time, each for its own request.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        model_id (str): The name ``/v1/models`` lists and responses carry.
        media: A :class:`~mmllava.apis.openai_media.MediaResolver` that reads the visuals.
    """

    def __init__(self, model: torch.nn.Module, model_id: str, media):
        self.model = model
        self.model_id = model_id
        self.media = media
        self.lock = threading.Lock()
        self.created = int(time.time())

    def models(self) -> dict:
        """The ``GET /v1/models`` body."""
        return models_list(self.model_id, self.created)

    def parse(self, body) -> ChatRequest:
        """Check a request body and read its visuals (no lock: the model is not used)."""
        return parse_request(body, self.model_id, self.media)

    def _start(self, request: ChatRequest, stream: bool):
        """Check the conversation and start :func:`chat`; returns (answer, usage state)."""
        from transformers import LogitsProcessorList

        from .chat import chat, prepare_chat_inputs
        counter = _CountSteps()
        kwargs = request.generate_kwargs
        try:
            # chat() checks too, but the prompt's length (image tokens included) is the usage.
            prepared = prepare_chat_inputs(self.model, request.messages, request.images,
                                           request.videos)
            if request.seed is not None:
                torch.manual_seed(request.seed)  # under the lock: the sampler is this answer's
            answer = chat(self.model, request.messages, request.images, request.videos,
                          stream=stream, logits_processor=LogitsProcessorList([counter]),
                          **kwargs)
        except ValueError as e:  # chat's word for the caller's mistake
            code = 'context_length_exceeded' if 'context' in str(e) else None
            raise APIError(400, str(e), 'messages', code)
        prompt_tokens = prepared['inputs']['input_ids'].shape[1]
        room = self.model.max_length - prompt_tokens
        limit = kwargs.get('max_new_tokens', self.model.generation_cfg.get('max_new_tokens'))
        limit = room if limit is None else min(limit, room)
        return answer, dict(prompt_tokens=prompt_tokens, counter=counter, limit=limit)

    @staticmethod
    def _usage(state: dict) -> dict:
        return usage(state['prompt_tokens'], state['counter'].steps)

    @staticmethod
    def _finish_reason(state: dict) -> str:
        return 'length' if state['counter'].steps >= state['limit'] else 'stop'

    def complete(self, request: ChatRequest) -> dict:
        """A ``chat.completion`` body for a request (which is closed after).

        Raises:
            APIError: 400 for a conversation :func:`chat` refuses (``param`` ``messages``).
        """
        with request, self.lock:
            answer, state = self._start(request, stream=False)
        return completion(self.model_id, answer, self._finish_reason(state),
                          self._usage(state))

    def stream(self, request: ChatRequest) -> Iterator[dict]:
        """The bodies of a streamed answer, each to be sent as one server-sent event.

        The first ``next()`` takes the lock and starts the answer: it raises
        :class:`APIError` for a request :func:`chat` refuses, so the caller can still answer
        with a status. The lock is held until the iterator ends or is closed; closing it
        early (a client gone) stops the generation. After the first body, errors are sent as
        an error body in the stream. The request is closed at the end.

        Yields:
            dict: The ``role`` chunk, one chunk per text piece, the ``finish_reason`` chunk,
            then the usage chunk if the request asked for it.
        """
        with request, self.lock:  # held until the stream ends: the model is this request's
            pieces, state = self._start(request, stream=True)
            writer = ChunkWriter(self.model_id)
            try:
                yield writer.delta(dict(role='assistant', content=''))
                try:
                    for piece in pieces:
                        yield writer.delta(dict(content=piece))
                    yield writer.delta({}, self._finish_reason(state))
                    if request.include_usage:
                        yield writer.usage(self._usage(state))
                except APIError as err:  # mid-stream: the status is sent, say it in the stream
                    yield err.body()
                except Exception as e:
                    logger.exception('error while streaming an answer')
                    yield APIError.internal(e).body()
            finally:
                pieces.close()  # a client gone mid-stream stops the generation
