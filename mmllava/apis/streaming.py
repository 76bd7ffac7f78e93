"""Streamed generation: token ids from a generating thread, decoded into text pieces.

``model.generate`` blocks until the answer is done, so :func:`stream_generate` runs it in a
thread and hands the ids over a queue; :class:`IncrementalDecoder` turns the growing ids into
pieces that join to exactly the whole answer. Closing the stream early stops the thread at the
next token, so a reader that goes away frees the model.
"""
import queue
import threading
from typing import Iterator, List, Optional, Sequence

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer


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


def cut_at_stop(ids: List[int], stops: Sequence[int]) -> List[int]:
    """``ids`` up to (not including) the first stop token."""
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i]
    return ids


class IncrementalDecoder:
    """Turn a growing list of ids into text pieces that join to the final answer.

    Sentencepiece decodes a token's leading "▁" as a space only inside a text, so tokens are
    not decoded one by one: the whole prefix is decoded and the new suffix emitted. Trailing
    whitespace and an unfinished UTF-8 character (byte fallback gives U+FFFD) are held back
    until more text follows, so the pieces join to exactly ``decode(ids).strip()``.

    Args:
        tokenizer: The model's tokenizer.
        stops (Sequence[int]): Token ids that end the answer (not part of it).
    """

    def __init__(self, tokenizer, stops: Sequence[int]):
        self.tokenizer = tokenizer
        self.stops = set(stops)
        self.ids: List[int] = []
        self.emitted = ''
        self.stopped = False

    def text(self) -> str:
        """The answer so far, stripped."""
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()

    def _emit(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ''  # an earlier piece decodes differently now: wait for the final text
        piece, self.emitted = text[len(self.emitted):], text
        return piece

    def add(self, ids: Sequence[int]) -> str:
        """Take newly generated ids; return the text that is now certain (maybe empty)."""
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
        """Take the final ids (all of them, when given); return the rest of the answer."""
        if ids is not None:
            self.ids = cut_at_stop(list(ids), self.stops)
        return self._emit(self.text())


def stream_generate(model: torch.nn.Module, inputs: dict, kwargs: dict) -> Iterator[str]:
    """Generate in a thread and yield the answer's text pieces as they come.

    Args:
        model: A LLaVA with a tokenizer.
        inputs (dict): Its inputs (:func:`mmllava.apis.chat.prepare_chat_inputs`).
        kwargs (dict): ``generate`` keywords; ``eos_token_id`` (a list) gives the stop tokens.

    Yields:
        str: Pieces that join to the decoded, stripped answer. An error in the generating
        thread is raised here; closing the iterator stops the thread and waits for it.
    """
    out: queue.Queue = queue.Queue()
    cancel = threading.Event()
    kwargs = dict(kwargs)
    criteria = StoppingCriteriaList(kwargs.pop('stopping_criteria', None) or [])
    criteria.append(_Cancelled(cancel))

    def run():
        try:
            ids = model.generate(inputs['input_ids'], inputs.get('attention_mask'),
                                 inputs.get('pixel_values'), inputs.get('visual_frames'),
                                 image_sizes=inputs.get('image_sizes'),
                                 streamer=_QueueStreamer(out), stopping_criteria=criteria,
                                 **kwargs)
            out.put(('done', ids[0].tolist()))
        except BaseException as e:  # handed to the reader, raised there
            out.put(('error', e))

    decoder = IncrementalDecoder(model.tokenizer, kwargs['eos_token_id'])
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
