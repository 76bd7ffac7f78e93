"""Continuous batching: rows that join the running batch at different steps answer exactly as
the same requests one at a time (greedy, and seeded sampling), each stopping on its own."""
import threading
import time

import numpy as np
import pytest
import torch

from mmllava.apis import get_model
from mmllava.apis.chat import prepare_chat_inputs
from mmllava.models.decoding.batching import ContinuousBatcher, QueueFull

QUESTIONS = ['What is the person doing?', 'Describe the picture in detail, please.',
             'Is it day or night?', 'How many people are there?', 'What colour dominates?',
             'Name the action.']


@pytest.fixture(scope='module')
def model():
    return get_model('llava-tiny_mocap-actions', pretrained=True)


def requests(model, n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)
        messages = [dict(role='user', content='<image>\n' + QUESTIONS[i % len(QUESTIONS)])]
        out.append(prepare_chat_inputs(model, messages, [image])['inputs'])
    return out


def alone(model, inputs, **kwargs):
    ids = model.generate(inputs['input_ids'], inputs.get('attention_mask'),
                         inputs.get('pixel_values'), inputs.get('visual_frames'),
                         image_sizes=inputs.get('image_sizes'), **kwargs)
    return ids[0].tolist()


def test_rows_joining_at_different_steps_answer_as_alone(model):
    reqs = requests(model, 6)
    budgets = [24, 9, 30, 16, 24, 5]
    want = [alone(model, r, max_new_tokens=b, eos_token_id=None) for r, b in zip(reqs, budgets)]
    batcher = ContinuousBatcher(model, max_batch=4, max_queue=8)
    try:
        seen = {i: [] for i in range(len(reqs))}
        jobs = []
        for i, (r, b) in enumerate(zip(reqs, budgets)):
            jobs.append(batcher.submit(r, on_token=seen[i].append, max_new_tokens=b,
                                       eos_token_id=None))
            time.sleep(0.01 * i)  # later rows join a batch already running
        for job in jobs:
            assert job.wait(60) and job.error is None, job.error
        assert [job.ids for job in jobs] == want
        assert [seen[i] for i in range(len(reqs))] == want  # streamed token by token
        assert all(job.finish == 'length' for job in jobs)
        assert batcher.steps < sum(budgets) - len(budgets)  # rows really shared steps
    finally:
        batcher.close()


def test_stop_tokens_seeds_and_cancel_per_row(model):
    reqs = requests(model, 3)
    free = alone(model, reqs[0], max_new_tokens=12, eos_token_id=None)
    stop = free[4]
    want_stop = alone(model, reqs[0], max_new_tokens=12, eos_token_id=[stop])
    torch.manual_seed(5)
    want_sample = alone(model, reqs[1], max_new_tokens=12, eos_token_id=None, do_sample=True,
                        temperature=1.3, top_k=40)
    batcher = ContinuousBatcher(model, max_batch=4)
    cancel = threading.Event()
    try:
        a = batcher.submit(reqs[0], max_new_tokens=12, eos_token_id=[stop])
        b = batcher.submit(reqs[1], seed=5, max_new_tokens=12, eos_token_id=None,
                           do_sample=True, temperature=1.3, top_k=40)
        c = batcher.submit(reqs[2], should_stop=cancel.is_set, max_new_tokens=10_000,
                           eos_token_id=None, on_token=lambda t: cancel.set())
        for job in (a, b, c):
            assert job.wait(60) and job.error is None, job.error
        assert a.ids == want_stop and a.finish == 'stop' and a.ids[-1] == stop
        assert b.ids == want_sample and b.finish == 'length'
        assert c.finish == 'cancelled' and len(c.ids) == 1
    finally:
        batcher.close()


def test_bounded_queue_and_a_failing_row_does_not_stop_the_others(model):
    reqs = requests(model, 2)
    batcher = ContinuousBatcher(model, max_batch=1, max_queue=1)
    release = threading.Event()
    try:
        first = batcher.submit(reqs[0], should_stop=release.is_set, max_new_tokens=10_000,
                               eos_token_id=None)
        deadline = time.time() + 30
        while batcher.active_rows == 0 and time.time() < deadline:
            time.sleep(0.01)
        bad = batcher.submit(dict(reqs[1], pixel_values=torch.zeros(1, 3, 5, 5)),
                             max_new_tokens=4)
        with pytest.raises(QueueFull):
            batcher.submit(reqs[1], max_new_tokens=4)
        release.set()
        good = None
        assert first.wait(60) and first.finish == 'cancelled'
        assert bad.wait(60) and bad.error is not None
        good = batcher.submit(reqs[1], max_new_tokens=4, eos_token_id=None)
        assert good.wait(60) and good.ids == alone(model, reqs[1], max_new_tokens=4,
                                                   eos_token_id=None)
    finally:
        batcher.close()


def test_the_batcher_survives_an_error_outside_any_row(model, monkeypatch):
    import mmllava.models.decoding.batching as batching
    reqs = requests(model, 1)
    real, calls = batching.fast_lm, []

    def broken_once(llm):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('weights changed under us')
        return real(llm)

    monkeypatch.setattr(batching, 'fast_lm', broken_once)
    batcher = ContinuousBatcher(model, max_batch=2)
    try:
        first = batcher.submit(reqs[0], max_new_tokens=3, eos_token_id=None)
        assert first.wait(30) and 'weights changed' in str(first.error)
        second = batcher.submit(reqs[0], max_new_tokens=3, eos_token_id=None)
        assert second.wait(30) and second.error is None and len(second.ids) == 3
    finally:
        batcher.close()
