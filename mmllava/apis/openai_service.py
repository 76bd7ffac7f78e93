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
- :meth:`~ChatCompletionService.complete` / :meth:`~ChatCompletionService.stream` generate.
  With ``max_batch > 1`` (the server's default) requests join one running decode batch at
  step boundaries and leave when done (:class:`~mmllava.models.decoding.batching.
  ContinuousBatcher`); otherwise, and for a model our decoder does not run, one request at a
  time under the lock. Either way a request waits only until its deadline and is given up
  when it is cancelled (its client gone).

It is synchronous and blocking; the HTTP layer runs it off its event loop.
"""
import logging
import queue
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


class _JobSteps:
    """A batched job's completion tokens, read as ``_CountSteps``."""

    def __init__(self, job):
        self.job = job

    @property
    def steps(self) -> int:
        return len(self.job.ids)


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
        max_batch (int): Requests decoded together (continuous batching); 1: one at a time.
        max_queue (int): Requests waiting to join the batch at most (503 past it).
    """

    def __init__(self, model: torch.nn.Module, model_id: str, media,
                 request_timeout: Optional[float] = None, max_batch: int = 1,
                 max_queue: int = 64):
        self.model = model
        self.model_id = model_id
        self.media = media
        self.request_timeout = request_timeout
        self.lock = threading.Lock()
        self.batcher = None
        reason = model.decode_fallback_reason(model.generation_cfg)
        if model.generation_cfg.get('decoder') == 'transformers':
            reason = "decoder='transformers'"
        if max_batch > 1 and reason is not None:
            logger.warning(f'one request at a time: our decoder does not run {reason}')
        elif max_batch > 1:
            from mmllava.models.decoding.batching import ContinuousBatcher
            self.batcher = ContinuousBatcher(model, max_batch, max_queue, lock=self.lock)
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

    # ------------------------------------------------------------ continuous batching
    def _batchable(self, request: ChatRequest) -> bool:
        return (self.batcher is not None
                and self.model.decode_fallback_reason(request.generate_kwargs) is None)

    def _submit(self, request: ChatRequest, on_token=None, on_end=None):
        """Queue a prepared request in the batch; returns (job, usage state)."""
        from mmllava.models.decoding.batching import QueueFull

        from .chat import _generate_kwargs
        inputs = request.prepared['inputs']
        prompt_tokens = inputs['input_ids'].shape[1]
        kwargs = _generate_kwargs(self.model, dict(request.generate_kwargs), prompt_tokens)
        try:
            job = self.batcher.submit(
                inputs, on_token=on_token, on_end=on_end, seed=request.seed,
                should_stop=lambda: request.cancelled() or request.expired(), **kwargs)
        except QueueFull as e:
            raise APIError(503, f'The server is busy: {e}', code='overloaded',
                           error_type='server_error')
        room = self.model.max_length - prompt_tokens
        limit = kwargs.get('max_new_tokens', self.model.generation_cfg.get('max_new_tokens'))
        limit = room if limit is None else min(limit, room)
        return job, dict(prompt_tokens=prompt_tokens, counter=_JobSteps(job), limit=limit,
                         stops=kwargs['eos_token_id'])

    def _check_started(self, job, request: ChatRequest) -> None:
        """A job that ended before its first token: the request's cancel or deadline, or
        an error, as the lock path answers them."""
        if job.error is not None:
            raise job.error
        if job.finish == 'cancelled' and not job.ids:
            if request.cancelled():
                raise APIError(499, 'The client went away', code='client_closed_request')
            raise APIError(503, 'The server is busy: the request waited for the model past '
                           'its time limit (--request-timeout)', code='timeout',
                           error_type='server_error')

    @staticmethod
    def _next_token(tokens: queue.Queue, job) -> Optional[int]:
        """The job's next token as soon as it comes; None once it is done (its end puts a
        None after its last token)."""
        return tokens.get()

    def _complete_batched(self, request: ChatRequest) -> dict:
        from .streaming import IncrementalDecoder
        job, state = self._submit(request)
        job.wait()
        self._check_started(job, request)
        answer = IncrementalDecoder(self.model.tokenizer, state['stops']).finish(job.ids)
        return completion(self.model_id, answer, self._finish_reason(state, request),
                          self._usage(state))

    def _stream_batched(self, request: ChatRequest) -> Iterator[dict]:
        from .streaming import IncrementalDecoder
        tokens: queue.Queue = queue.Queue()
        job, state = self._submit(request, on_token=tokens.put,
                                  on_end=lambda: tokens.put(None))
        token = self._next_token(tokens, job)  # queued until its first token
        if token is None:
            self._check_started(job, request)
        decoder = IncrementalDecoder(self.model.tokenizer, state['stops'])
        writer = ChunkWriter(self.model_id)
        yield writer.delta(dict(role='assistant', content=''))
        try:
            while token is not None:
                piece = decoder.add([token])
                if piece:
                    yield writer.delta(dict(content=piece))
                token = self._next_token(tokens, job)
            if job.error is not None:
                raise job.error
            rest = decoder.finish(job.ids)
            if rest:
                yield writer.delta(dict(content=rest))
            yield writer.delta({}, self._finish_reason(state, request))
            if request.include_usage:
                yield writer.usage(self._usage(state))
        except APIError as err:
            yield err.body()
        except Exception as e:
            logger.exception('error while streaming an answer')
            yield APIError.internal(e).body()

    def complete(self, request: ChatRequest) -> dict:
        """A ``chat.completion`` body for a request (which is closed after).

        Raises:
            APIError: 400 for a conversation :func:`chat` refuses (``param`` ``messages``);
                503 when the lock is not free before the request's deadline.
        """
        with request:
            self.prepare(request)
            if self._batchable(request):
                return self._complete_batched(request)
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
            if self._batchable(request):
                try:  # closing early (a client gone) ends the row at its next token
                    yield from self._stream_batched(request)
                finally:
                    request.cancel()
                return
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
