"""Continuous batching: requests join the running decode batch at step boundaries.

One thread owns the model. At each step boundary it prefills the requests that arrived (each
alone, into a cache of its own sized to it), then runs one decode step for every active row
together: the matrix products see a batch, the attention reads each row's own cache (rows
joined at different times have different lengths; no padding, no copy). A row leaves when it
emits a stop token, reaches its token budget or its caller says stop. Each row chooses its
tokens as :func:`~.loop.decode` does alone (the same logits processors; a seeded row samples
from its own generator, as one request seeded alone samples from the global one), so answers
equal those of the same requests sent one at a time.
"""
import threading
from collections import deque
from contextlib import ExitStack
from typing import Callable, List, Optional

import torch

from .linear import decode_threads
from .lm import FastLM, fast_lm
from .loop import DEFAULTS, _as_list, decode_dtype_of, logits_processors


class QueueFull(RuntimeError):
    """The batcher's queue holds ``max_queue`` requests already."""


class Job:
    """One request in the batcher: its inputs, keywords, and what it generated.

    Attributes:
        ids (list[int]): The generated ids so far (stop token included, as ``decode``).
        finish (str): ``'stop'`` (a stop token), ``'length'`` (the budget) or ``'cancelled'``
            (``should_stop`` said so), once done.
        error (BaseException): What failed while serving it, if anything.
    """

    def __init__(self, inputs: dict, kwargs: dict, on_token: Optional[Callable] = None,
                 should_stop: Optional[Callable[[], bool]] = None,
                 seed: Optional[int] = None, on_end: Optional[Callable[[], None]] = None):
        self.inputs, self.kwargs = inputs, kwargs
        self.on_token, self.should_stop, self.on_end = on_token, should_stop, on_end
        self.seed = seed
        self.ids: List[int] = []
        self.finish: Optional[str] = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until done (True) or ``timeout`` seconds (False)."""
        return self.done.wait(timeout)

    def end(self, finish: Optional[str] = None, error: Optional[BaseException] = None) -> None:
        """Mark the job done (``finish`` or ``error``) and tell its caller."""
        self.finish, self.error = finish, error
        self.done.set()
        if self.on_end is not None:
            self.on_end()


class _Row:
    """A job being decoded: its cache, next slot and position, sampling state."""

    def __init__(self, job: Job, cache, length: int, cfg: dict, eos: List[int]):
        self.job, self.cache, self.slot = job, cache, length
        self.cfg, self.eos = cfg, set(eos)
        self.procs = logits_processors(cfg, eos)
        self.max_new = cfg['max_new_tokens']
        self.generator = None
        if job.seed is not None and cfg['do_sample']:
            device = cache.keys[0].device
            self.generator = torch.Generator(device=device).manual_seed(job.seed)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this row's (1, vocab) logits; records it, tells the job."""
        if self.procs:
            scores = self.procs(torch.tensor([self.job.ids], dtype=torch.long,
                                             device=logits.device), logits)
        else:
            scores = logits
        if self.cfg['do_sample']:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator)[0, 0])
        else:
            token = int(torch.argmax(scores, dim=-1)[0])
        self.job.ids.append(token)
        if self.job.on_token is not None:
            self.job.on_token(token)
        return token

    def finished(self, token: int) -> Optional[str]:
        if token in self.eos:
            return 'stop'
        if len(self.job.ids) >= self.max_new:
            return 'length'
        if self.job.should_stop is not None and self.job.should_stop():
            return 'cancelled'
        return None


class ContinuousBatcher:
    """Serve generation requests of one LLaVA in one decode batch that rows join and leave.

    Args:
        model: A LLaVA whose LLM our decoder runs (see
            :meth:`~mmllava.models.LLaVA.decode_fallback_reason`).
        max_batch (int): Rows decoded together at most; later requests wait in the queue.
        max_queue (int): Waiting requests at most; :meth:`submit` refuses more.
        lock (threading.Lock, optional): Held around each step boundary's work (prefills and
            one step), so that other users of the model (transformers' generate for a beam
            search) run between steps, not during them.
    """

    def __init__(self, model: torch.nn.Module, max_batch: int = 8, max_queue: int = 64,
                 lock: Optional[threading.Lock] = None):
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f'max_batch must be >= 1 and max_queue >= 0, got {max_batch}, '
                             f'{max_queue}')
        self.model, self.max_batch, self.max_queue = model, max_batch, max_queue
        self.lock = lock or threading.Lock()
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.active_rows = 0
        self.steps = 0  # batched decode steps run (for tests and stats)
        self._thread = threading.Thread(target=self._loop, name='mmllava-batcher', daemon=True)
        self._thread.start()

    def submit(self, inputs: dict, on_token: Optional[Callable[[int], None]] = None,
               should_stop: Optional[Callable[[], bool]] = None, seed: Optional[int] = None,
               on_end: Optional[Callable[[], None]] = None, **generate_kwargs) -> Job:
        """Queue a request; it joins the batch at the next step boundary with room.

        Args:
            inputs: ``input_ids`` (1, L), ``attention_mask``, ``pixel_values``,
                ``visual_frames``, ``image_sizes`` (``prepare_chat_inputs(...)['inputs']``).
            on_token: Called (in the batcher's thread) with each generated id.
            should_stop: Polled after each token; True ends the row (``finish='cancelled'``).
            seed: Sampling seed of this request alone.
            on_end: Called (in the batcher's thread) once the job is done, however it ended.
            **generate_kwargs: ``generate`` keywords our loop implements.

        Raises:
            QueueFull: ``max_queue`` requests are waiting already.
        """
        job = Job(inputs, generate_kwargs, on_token, should_stop, seed, on_end)
        with self._cond:
            if self._closed:
                raise RuntimeError('the batcher is closed')
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f'{len(self._queue)} requests are waiting already')
            self._queue.append(job)
            self._cond.notify()
        return job

    def queued(self) -> int:
        """Requests waiting to join."""
        return len(self._queue)

    def close(self) -> None:
        """Stop the thread after the current step; waiting and active jobs fail."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # ---------------------------------------------------------------- the decode thread
    def _loop(self) -> None:
        # The single-token steps run with torch on one thread (decode_threads); switching
        # costs, so the switch is held over consecutive steps and undone only for prefills.
        with ExitStack() as threads:
            self._serve(threads)

    def _serve(self, threads: ExitStack) -> None:
        rows: List[_Row] = []
        lm = None
        stepping = False
        while True:
            with self._cond:
                while not self._queue and not rows and not self._closed:
                    self._cond.wait()
                if self._closed:
                    for job in list(self._queue) + [r.job for r in rows]:
                        self._fail(job, RuntimeError('the batcher was closed'))
                    return
                for job in [j for j in self._queue if j.should_stop and j.should_stop()]:
                    self._queue.remove(job)  # given up while waiting: answered at once
                    job.end('cancelled')
                joining = [self._queue.popleft()
                           for _ in range(min(len(self._queue), self.max_batch - len(rows)))]
            try:
                rows, lm, stepping = self._iteration(threads, joining, rows, lm, stepping)
            except BaseException as e:  # the thread must live on: fail this batch's jobs
                for job in joining + [r.job for r in rows]:
                    if not job.done.is_set():
                        self._fail(job, e)
                rows, lm = [], None
                self.active_rows = 0

    def _iteration(self, threads: ExitStack, joining: List[Job], rows: List[_Row], lm,
                   stepping: bool):
        """One step boundary: prefill the joining jobs, then one step of every row."""
        with self.lock:
            if joining or lm is None:
                if stepping:
                    threads.close()  # prefills on every thread
                    stepping = False
                lm = fast_lm(self.model.llm)  # rebuilt if the weights changed
                for job in joining:
                    row = self._prefill(lm, job)
                    if row is not None:
                        rows.append(row)
            if rows:
                if not stepping:
                    threads.enter_context(decode_threads())
                    stepping = True
                rows = self._step(lm, rows)
            elif stepping:
                threads.close()
                stepping = False
            self.active_rows = len(rows)
        return rows, lm, stepping

    def _fail(self, job: Job, error: BaseException) -> None:
        job.end(error=error)

    def _end(self, row: _Row, reason: str) -> None:
        row.job.end(reason)

    def _prefill(self, lm: FastLM, job: Job) -> Optional[_Row]:
        """Run a joining job's prompt; its first token; the row, or None if it ended."""
        try:
            if job.should_stop is not None and job.should_stop():
                job.end('cancelled')
                return None
            inputs = job.inputs
            ids = inputs['input_ids']
            cfg = self.model.generation_options(ids, job.kwargs)
            eos = _as_list(cfg.pop('eos_token_id', None))
            cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
            n = ids.shape[1]
            with torch.no_grad():
                embeds = self.model.embed_inputs(ids, inputs.get('pixel_values'),
                                                 inputs.get('visual_frames'),
                                                 inputs.get('image_sizes')).to(lm.dtype)
                cache = lm.new_cache(1, n + max(cfg['max_new_tokens'], 1))
                positions = torch.arange(n, device=embeds.device)[None]
                logits = lm.forward(embeds, positions, cache, 0, None, causal=True)
            row = _Row(job, cache, n, cfg, eos)
            if row.max_new <= 0:
                self._end(row, 'length')
                return None
            reason = row.finished(row.choose(logits))
            if reason is not None:
                self._end(row, reason)
                return None
            return row
        except BaseException as e:  # the job's failure, not the batcher's
            self._fail(job, e)
            return None

    def _step(self, lm: FastLM, rows: List[_Row]) -> List[_Row]:
        """One decode step of every row; the rows that go on."""
        try:
            matrices = lm.decode_matrices(
                decode_dtype_of(self.model.generation_cfg.get('decode_dtype')))
            with torch.no_grad():
                device = lm.lm_head.weight.device
                last = torch.tensor([[r.job.ids[-1]] for r in rows], dtype=torch.long,
                                    device=device)
                hidden = lm.embed(last).to(lm.dtype)
                positions = torch.tensor([[r.slot] for r in rows], dtype=torch.long,
                                         device=device)
                logits = lm.forward(hidden, positions, [r.cache for r in rows],
                                    [r.slot for r in rows], None, causal=False,
                                    matrices=matrices)
        except BaseException as e:
            for row in rows:
                self._fail(row.job, e)
            return []
        self.steps += 1
        going = []
        for i, row in enumerate(rows):
            row.slot += 1
            try:
                reason = row.finished(row.choose(logits[i:i + 1]))
            except BaseException as e:
                self._fail(row.job, e)
                continue
            if reason is None:
                going.append(row)
            else:
                self._end(row, reason)
        return going


__all__ = ['ContinuousBatcher', 'Job', 'QueueFull']
