"""The model behind the OpenAI-compatible server: one answer at a time, with its usage.

:class:`ChatCompletionService` turns a :class:`~mmllava.apis.openai_protocol.ChatRequest` into
a ``chat.completion`` body or a sequence of ``chat.completion.chunk`` bodies with
:func:`mmllava.apis.chat.prepare_chat_inputs` and :func:`mmllava.apis.chat.answer_inputs`
(:func:`mmllava.apis.chat.chat`'s two halves), so the server answers exactly as the Python API
does. Work is split so that one client cannot hold up the others:

- :meth:`~ChatCompletionService.parse` checks the body, refuses a text too long for the context
  before anything is decoded, and reads the visuals within the media limits;
- :meth:`~ChatCompletionService.prepare` decodes the clips and tokenizes, without the lock
  (the HTTP layer runs it in a bounded pool);
- :meth:`~ChatCompletionService.complete` / :meth:`~ChatCompletionService.stream` generate
  under the lock, which is waited for only until the request's deadline and given up when
  the request is cancelled (its client gone).

It is synchronous and blocking; the HTTP layer runs it off its event loop.
"""
import logging
import threading
import time
from typing import Iterator, Optional

import torch
from transformers import StoppingCriteria

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

#: How long a wait for the lock sleeps between checks of the request's deadline and cancel.
LOCK_POLL_S = 0.05
#: Text characters a token may stand for at most, beyond the longest vocabulary piece: a bound
#: with room for normalization (NFKC can fold several characters into one).
CHARS_PER_TOKEN_SLACK = 4


class _CountSteps:
    """A no-op logits processor counting generation steps: the completion tokens."""

    def __init__(self):
        self.steps = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        return scores


class _StopWhen(StoppingCriteria):
    """Stops generation once the request is cancelled or past its deadline."""

    def __init__(self, request: ChatRequest):
        self.request = request

    def __call__(self, input_ids, scores, **kwargs):
        done = self.request.cancelled() or self.request.expired()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)


def max_chars_per_token(tokenizer) -> int:
    """The longest text one token of ``tokenizer`` can stand for (its longest piece, slack
    included): ``len(text) / this`` is a lower bound of the text's token count."""
    longest = max((len(tokenizer.id_to_token(i) or '') for i in range(tokenizer.vocab_size)),
                  default=1)
    return max(1, longest) * CHARS_PER_TOKEN_SLACK


class ChatCompletionService:
    """The model behind a lock: one generation at a time, each for its own request.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        model_id (str): The name ``/v1/models`` lists and responses carry.
        media: A :class:`~mmllava.apis.openai_media.MediaResolver` that reads the visuals.
        request_timeout (float, optional): Seconds a request may take from its parsing to its
            last token: waiting for the lock past it answers 503, generating past it stops
            the answer (``finish_reason`` ``length``). ``None``: no limit.
    """

    def __init__(self, model: torch.nn.Module, model_id: str, media,
                 request_timeout: Optional[float] = None):
        self.model = model
        self.model_id = model_id
        self.media = media
        self.request_timeout = request_timeout
        self.lock = threading.Lock()
        self.created = int(time.time())
        # No token stands for more characters: a longer text cannot fit the context.
        self.max_text_chars = model.max_length * max_chars_per_token(model.tokenizer) \
            if model.tokenizer is not None else None

    def models(self) -> dict:
        """The ``GET /v1/models`` body."""
        return models_list(self.model_id, self.created)

    def parse(self, body) -> ChatRequest:
        """Check a request body and read its images (no lock: the model is not used).

        A text longer than the context could hold is refused (400
        ``context_length_exceeded``) before any visual is read.
        """
        request = parse_request(body, self.model_id, self.media,
                                max_text_chars=self.max_text_chars)
        if self.request_timeout is not None:
            request.deadline = time.monotonic() + self.request_timeout
        return request

    def prepare(self, request: ChatRequest) -> ChatRequest:
        """Decode the clips and tokenize (no lock); a refused conversation closes the request.

        Raises:
            APIError: 400 for a conversation :func:`chat` refuses (``param`` ``messages``;
                ``code`` ``context_length_exceeded`` when it leaves no room for an answer);
                413 ``video_too_large`` for a clip whose frames grow past its header's size.
        """
        from mmllava.datasets.transforms.video import FrameSizeError, strict_frame_size

        from .chat import prepare_chat_inputs
        if request.prepared is not None:
            return request
        try:
            with strict_frame_size():  # the clips were measured by their headers
                request.prepared = prepare_chat_inputs(self.model, request.messages,
                                                       request.images, request.videos)
        except FrameSizeError as e:
            request.close()
            raise APIError(413, request.redact(str(e)), 'messages', 'video_too_large')
        except ValueError as e:  # chat's word for the caller's mistake
            request.close()
            code = 'context_length_exceeded' if 'context' in str(e) else None
            raise APIError(400, request.redact(str(e)), 'messages', code)
        except BaseException:
            request.close()
            raise
        return request

    def _acquire(self, request: ChatRequest) -> None:
        """Take the lock, waiting no longer than the request's deadline or its cancel."""
        while not self.lock.acquire(timeout=LOCK_POLL_S):
            if request.cancelled():
                raise APIError(499, 'The client went away', code='client_closed_request')
            if request.expired():
                raise APIError(503, 'The server is busy: the request waited for the model '
                               'past its time limit (--request-timeout)', code='timeout',
                               error_type='server_error')

    def _start(self, request: ChatRequest, stream: bool):
        """Start the answer to a prepared request; returns (answer, usage state)."""
        from transformers import LogitsProcessorList

        from .chat import answer_inputs
        counter = _CountSteps()
        kwargs = dict(request.generate_kwargs)
        inputs = request.prepared['inputs']
        if request.seed is not None:
            torch.manual_seed(request.seed)  # under the lock: the sampler is this answer's
        answer = answer_inputs(self.model, inputs, stream=stream,
                               logits_processor=LogitsProcessorList([counter]),
                               stopping_criteria=[_StopWhen(request)], **kwargs)
        prompt_tokens = inputs['input_ids'].shape[1]
        room = self.model.max_length - prompt_tokens
        limit = kwargs.get('max_new_tokens', self.model.generation_cfg.get('max_new_tokens'))
        limit = room if limit is None else min(limit, room)
        return answer, dict(prompt_tokens=prompt_tokens, counter=counter, limit=limit)

    @staticmethod
    def _usage(state: dict) -> dict:
        return usage(state['prompt_tokens'], state['counter'].steps)

    @staticmethod
    def _finish_reason(state: dict, request: ChatRequest) -> str:
        cut = state['counter'].steps >= state['limit'] or request.expired()
        return 'length' if cut else 'stop'

    def complete(self, request: ChatRequest) -> dict:
        """A ``chat.completion`` body for a request (which is closed after).

        Raises:
            APIError: 400 for a conversation :func:`chat` refuses (``param`` ``messages``);
                503 when the lock is not free before the request's deadline.
        """
        with request:
            self.prepare(request)
            self._acquire(request)
            try:
                answer, state = self._start(request, stream=False)
            finally:
                self.lock.release()
        return completion(self.model_id, answer, self._finish_reason(state, request),
                          self._usage(state))

    def stream(self, request: ChatRequest) -> Iterator[dict]:
        """The bodies of a streamed answer, each to be sent as one server-sent event.

        The first ``next()`` prepares the request, takes the lock and starts the answer: it
        raises :class:`APIError` for a request that is refused, so the caller can still
        answer with a status. The lock is held until the iterator ends or is closed; closing
        it early (a client gone) stops the generation. After the first body, errors are sent
        as an error body in the stream. The request is closed at the end.

        Yields:
            dict: The ``role`` chunk, one chunk per text piece, the ``finish_reason`` chunk,
            then the usage chunk if the request asked for it.
        """
        with request:
            self.prepare(request)
            self._acquire(request)
            try:  # held until the stream ends: the model is this request's
                pieces, state = self._start(request, stream=True)
                writer = ChunkWriter(self.model_id)
                try:
                    yield writer.delta(dict(role='assistant', content=''))
                    try:
                        for piece in pieces:
                            yield writer.delta(dict(content=piece))
                        yield writer.delta({}, self._finish_reason(state, request))
                        if request.include_usage:
                            yield writer.usage(self._usage(state))
                    except APIError as err:  # mid-stream: the status is sent already
                        yield err.body()
                    except Exception as e:
                        logger.exception('error while streaming an answer')
                        yield APIError.internal(e).body()
                finally:
                    pieces.close()  # a client gone mid-stream stops the generation
            finally:
                self.lock.release()
