"""mmllava.apis.chat: multi-turn chat with images and clips, whole and streamed."""
import copy
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_llava import tiny_model
from PIL import Image

from mmllava.apis import ChatSession, chat, chat_template, prepare_chat_inputs
from mmllava.apis.chat_inputs import _pipeline
from mmllava.apis.streaming import IncrementalDecoder
from mmllava.conversation import IMAGE_TOKEN_INDEX

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / 'tests/data/real_clips/arm_wrestling.mp4'


@pytest.fixture(scope='module')
def tiny():
    return tiny_model(generation_cfg=dict(max_new_tokens=8, num_beams=1, do_sample=False))


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Three different noise images (paths)."""
    folder = tmp_path_factory.mktemp('chat_imgs')
    paths = []
    for i in range(3):
        rng = np.random.default_rng(i)
        path = folder / f'img{i}.png'
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def first_logits(model, messages, images=(), videos=()):
    """Next-token logits of the answer: a fine-grained view of what the model answers."""
    inputs = prepare_chat_inputs(model, messages, images, videos)['inputs']
    with torch.no_grad():
        return model(inputs, mode='tensor')[0, -1]


def greedy_answer(model, messages, images=(), videos=(), **generate_kwargs):
    """The greedy answer worked out here rather than by ``chat``.

    Args:
        model: The LLaVA under test.
        messages: The conversation, ending with the user message to answer.
        images: Image sources in placeholder order.
        videos: Clip sources in placeholder order.
        **generate_kwargs: ``generate`` keywords over the model's ``generation_cfg``.

    Returns:
        str: The model's own ``generate`` ids, cut at the first EOS (vicuna_v1's stop
        token), decoded and stripped.
    """
    inputs = prepare_chat_inputs(model, messages, images, videos)['inputs']
    with torch.no_grad():
        ids = model.generate(inputs['input_ids'], inputs.get('attention_mask'),
                             inputs.get('pixel_values'), inputs.get('visual_frames'),
                             **generate_kwargs)[0].tolist()
    eos = model.tokenizer.eos_token_id
    ids = ids[:ids.index(eos)] if eos in ids else ids
    return model.tokenizer.decode(ids, skip_special_tokens=True).strip()


def placeholder_runs(input_ids):
    """(start, end) of each run of image placeholders in a row of ids."""
    runs, start = [], None
    ids = input_ids.tolist() + [0]
    for i, token in enumerate(ids):
        if token == IMAGE_TOKEN_INDEX and start is None:
            start = i
        elif token != IMAGE_TOKEN_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_template_from_config(tiny):
    assert chat_template(tiny).name == 'vicuna_v1'


def test_session_history_and_prompt(tiny, images):
    session = ChatSession(tiny)
    session.add_image(images[0])
    assert session.pending == ['image']
    first = session.ask('What is it?')
    assert first and first == greedy_answer(
        tiny, [dict(role='user', content='<image>\nWhat is it?')], [images[0]])
    assert session.pending == []
    second = session.ask('Why?')  # text only: the image stays in context
    assert session.messages == [
        dict(role='user', content='<image>\nWhat is it?'),
        dict(role='assistant', content=first),
        dict(role='user', content='Why?'),
        dict(role='assistant', content=second),
    ]
    assert session.images == [images[0]]
    assert second == greedy_answer(tiny, session.messages[:3], [images[0]])
    # The follow-up is answered with the image: the same history replayed statelessly with
    # another image gives other logits.
    follow_up = session.messages[:3]
    same = first_logits(tiny, follow_up, [images[0]])
    other = first_logits(tiny, follow_up, [images[1]])
    assert not torch.allclose(same, other)
    prompt = prepare_chat_inputs(tiny, follow_up, [images[0]])['prompt']
    assert prompt.endswith(f'USER: <image>\nWhat is it? ASSISTANT: {first}</s>USER: Why? '
                           'ASSISTANT:')
    session.reset()
    assert session.messages == [] and session.images == []


def test_session_equals_stateless_chat(tiny, images):
    session = ChatSession(tiny, system='Answer briefly.', max_new_tokens=6)
    session.add_image(images[0])
    session.ask('First?')
    session.add_image(images[1])
    answer = session.ask('Second?')
    messages = session.messages
    assert messages[0] == dict(role='system', content='Answer briefly.')
    assert chat(tiny, messages[:-1], images[:2], max_new_tokens=6) == answer
    prompt = prepare_chat_inputs(tiny, messages[:-1], images[:2])['prompt']
    assert prompt.startswith('Answer briefly. USER: <image>\nFirst? ASSISTANT:')


def test_image_order_is_respected(tiny, images):
    """Two images in two turns: the question about the second is answered from the second.

    Random weights have no semantics, so the check is on what the model computes: (1) the
    features scattered into the second placeholder run are exactly the second image's
    encoding (and the first run the first image's), which a swapped order fails; (2) the
    answer to the second question changes when the second image changes, and with the images
    in the other order; (3) the first answer cannot see the second image (a causal LM): it
    is the same whatever image comes later.
    """
    a, b, c = images
    captured = {}
    embed_inputs = tiny.embed_inputs

    def spy(input_ids, pixel_values=None, visual_frames=None, image_sizes=None):
        out = embed_inputs(input_ids, pixel_values, visual_frames, image_sizes)
        captured.update(input_ids=input_ids[0], embeds=out[0])
        return out

    session = ChatSession(tiny)
    session.add_image(a)
    first = session.ask('Describe this picture.')
    session.add_image(b)
    tiny.embed_inputs = spy
    try:
        second = session.ask('What is in the second picture?')
    finally:
        del tiny.embed_inputs  # back to the class's method
    runs = placeholder_runs(captured['input_ids'])
    assert len(runs) == 2 and all(e - s == tiny.num_image_tokens for s, e in runs)
    assert session.messages[2]['content'] == '<image>\nWhat is in the second picture?'

    def encoded(src):
        packed = _pipeline(tiny)(dict(messages=[dict(role='user', content='<image>\nx')],
                                      images=[src], videos=[]))
        pixels = tiny.data_preprocessor(dict(inputs=[packed['inputs']],
                                             data_samples=[None]), False)['inputs']
        with torch.no_grad():
            return tiny.encode_images(pixels['pixel_values'])[0]

    (s1, e1), (s2, e2) = runs
    torch.testing.assert_close(captured['embeds'][s2:e2], encoded(b))
    torch.testing.assert_close(captured['embeds'][s1:e1], encoded(a))
    assert not torch.allclose(encoded(a), encoded(b))

    history = session.messages[:3]
    assert chat(tiny, history, [a, b]) == second
    reference = first_logits(tiny, history, [a, b])
    torch.testing.assert_close(first_logits(tiny, history, [a, b]), reference)
    assert not torch.allclose(first_logits(tiny, history, [a, c]), reference)
    assert not torch.allclose(first_logits(tiny, history, [b, a]), reference)
    # The first answer is computed before the second image exists in the sequence.
    other = ChatSession(tiny)
    other.add_image(a)
    assert other.ask('Describe this picture.') == first


def test_stream_joins_to_answer(tiny, images):
    messages = [dict(role='user', content='<image>\nWhat is the person doing?')]
    whole = chat(tiny, messages, [images[0]], max_new_tokens=24)
    pieces = list(chat(tiny, messages, [images[0]], stream=True, max_new_tokens=24))
    assert len(pieces) > 1  # streamed, not given at once
    assert ''.join(pieces) == whole

    session = ChatSession(tiny, max_new_tokens=24)
    session.add_image(images[0])
    streamed = list(session.stream('What is the person doing?'))
    assert ''.join(streamed) == whole
    assert session.messages[-1] == dict(role='assistant', content=whole)
    follow = list(session.stream('And then?'))
    assert ''.join(follow) == chat(tiny, session.messages[:-1], [images[0]],
                                   max_new_tokens=24)


def test_stream_closed_early_stops_generation(tiny, images):
    lengths = []
    generate = tiny.generate

    def counting(*args, **kwargs):
        ids = generate(*args, **kwargs)
        lengths.append(ids.shape[1])
        return ids

    session = ChatSession(tiny)
    session.add_image(images[0])
    tiny.generate = counting
    try:
        stream = session.stream('Go on.', min_new_tokens=200, max_new_tokens=200)
        first = next(stream)
        stream.close()  # joins the generation thread
    finally:
        del tiny.generate
    assert lengths and lengths[0] < 200
    assert session.messages[-1] == dict(role='assistant', content=first)


def test_incremental_decoder_handles_word_boundaries_and_bytes(tiny):
    tok = tiny.tokenizer
    text = 'The man rides a horse, vélo über 日本 ok'
    ids = tok.encode(text)
    assert len(ids) > 10
    decoder = IncrementalDecoder(tok, [tok.eos_token_id])
    pieces = [decoder.add([i]) for i in ids]
    pieces.append(decoder.finish())
    assert ''.join(pieces) == tok.decode(ids).strip() == text
    assert not any('\ufffd' in p for p in pieces)
    assert sum(bool(p) for p in pieces) > 5
    # Stops at a stop token and ignores what follows.
    decoder = IncrementalDecoder(tok, [tok.eos_token_id])
    stop_at = tok.encode('hello there')
    got = decoder.add(stop_at + [tok.eos_token_id] + tok.encode(' junk')) + decoder.finish()
    assert got == 'hello there'


def test_stops_at_stop_token(tiny, images):
    """Generation ends at the template's stop token (EOS for vicuna_v1), which is not shown."""
    model = copy.deepcopy(tiny)
    eos = model.tokenizer.eos_token_id
    steps, generated = [], []

    def eos_at_third_step(module, args, output):
        steps.append(1)
        output = output.clone()
        output[..., eos] = 1e4 if len(steps) == 3 else -1e4
        return output

    generate = model.generate

    def recording(*args, **kwargs):
        ids = generate(*args, **kwargs)
        generated.append(ids[0].tolist())
        return ids

    model.generate = recording
    model.llm.get_output_embeddings().register_forward_hook(eos_at_third_step)
    messages = [dict(role='user', content='<image>\nHi')]
    answer = chat(model, messages, [images[0]], max_new_tokens=8)
    assert len(generated[-1]) == 3 and generated[-1][-1] == eos
    assert answer and answer == model.tokenizer.decode(generated[-1][:2]).strip()
    steps.clear()
    assert ''.join(chat(model, messages, [images[0]], stream=True, max_new_tokens=8)) == answer
    assert len(generated[-1]) == 3


def test_videos_and_images_in_one_conversation(tiny, images):
    clip = np.random.default_rng(5).integers(0, 256, (8, 40, 40, 3), dtype=np.uint8)
    session = ChatSession(tiny)
    session.add_image(images[0])
    session.add_video(clip)
    answer = session.ask('Compare them.')
    assert session.messages[0]['content'] == '<image>\n<video>\nCompare them.'
    inputs = prepare_chat_inputs(tiny, session.messages[:1], session.images,
                                 session.videos)['inputs']
    assert list(inputs['visual_frames']) == [1, 8]
    assert chat(tiny, session.messages[:1], session.images, session.videos) == answer
    other = clip[::-1].copy()
    assert not torch.allclose(first_logits(tiny, session.messages[:1], [images[0]], [clip]),
                              first_logits(tiny, session.messages[:1], [images[0]], [other]))


def test_real_clip(tiny):
    session = ChatSession(tiny, max_new_tokens=4)
    session.add_video(str(CLIP))
    answer = session.ask('What are they doing?')
    assert answer and answer == greedy_answer(
        tiny, [dict(role='user', content='<video>\nWhat are they doing?')], videos=[str(CLIP)],
        max_new_tokens=4)
    assert session.videos == [str(CLIP)]


def test_placeholder_count_must_match(tiny, images):
    user = dict(role='user', content='<image>\nWhat?')
    with pytest.raises(ValueError, match=r'1 <image> placeholder\(s\) but 0 image'):
        chat(tiny, [user])
    with pytest.raises(ValueError, match=r'1 <image> placeholder\(s\) but 2 image'):
        chat(tiny, [user], images[:2])
    with pytest.raises(ValueError, match=r'0 <video> placeholder\(s\) but 1 video'):
        chat(tiny, [user], images[:1], [images[0]])
    with pytest.raises(ValueError, match='end with a user message'):
        chat(tiny, [user, dict(role='assistant', content='x')], images[:1])
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        chat(tiny, [dict(role='bot', content='x'), dict(role='user', content='y')])


def test_bad_visuals_are_value_errors(tiny, tmp_path, images):
    user = [dict(role='user', content='<image>\nWhat?')]
    with pytest.raises(ValueError, match='not found'):
        chat(tiny, user, [str(tmp_path / 'missing.png')])
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot read image'):
        chat(tiny, user, [str(broken)])
    with pytest.raises(ValueError):
        chat(tiny, user, [{'not': 'an image'}])
    # A session reports bad files when attached and carries on.
    session = ChatSession(tiny)
    with pytest.raises(FileNotFoundError, match='missing.png'):
        session.add_image(tmp_path / 'missing.png')
    with pytest.raises(ValueError, match='cannot read image'):
        session.add_image(str(broken))
    with pytest.raises(ValueError, match='cannot (read|decode) video'):
        session.add_video(str(broken))
    assert session.pending == []
    with pytest.raises(ValueError, match='empty'):
        session.ask('  ')
    session.add_image(images[0])
    answer = session.ask('Fine?')
    assert answer and answer == greedy_answer(
        tiny, [dict(role='user', content='<image>\nFine?')], [images[0]])
    assert len(session.messages) == 2


def test_prompt_over_context(tiny, images):
    words = ' '.join(['horse'] * 600)
    with pytest.raises(ValueError, match='model context of 512 tokens'):
        chat(tiny, [dict(role='user', content=words)])
    many = [dict(role='user', content='<image>\n' * 40 + 'All of them?')]
    with pytest.raises(ValueError, match=r'\d+ tokens long \(image tokens included\)'):
        chat(tiny, many, [images[0]] * 40)
    # A failed question leaves the session as it was: history and attached images.
    session = ChatSession(tiny)
    session.add_image(images[0])
    with pytest.raises(ValueError, match='context'):
        session.ask(words)
    assert session.messages == [] and session.pending == ['image']
    with pytest.raises(ValueError, match='context'):
        session.stream(words)  # raised at the call, not at the first piece
    answer = session.ask('Short?')
    assert answer and answer == greedy_answer(
        tiny, [dict(role='user', content='<image>\nShort?')], [images[0]])


def test_answer_fits_the_context_left(tiny):
    """Near the end of the context the answer takes the room left, with no warning."""
    messages = [dict(role='user', content=' '.join(['horse'] * 130))]
    length = prepare_chat_inputs(tiny, messages)['inputs']['input_ids'].shape[1]
    room = tiny.max_length - length
    assert 0 < room < 200
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        pieces = list(chat(tiny, messages, stream=True, min_new_tokens=200,
                           max_new_tokens=200))
    ids = tiny.tokenizer.encode(''.join(pieces))
    assert room - 10 <= len(ids) <= room + 10  # re-encoding may merge a few pieces


def test_stream_is_prompt(tiny, images):
    """Streaming yields its first piece while the answer is still being generated.

    Generation is held at its 10th step until the reader has the first piece (the wait's
    timeout only guards against a hang): a stream that yields only once generation is done
    gets its first piece after all 60 steps.
    """
    messages = [dict(role='user', content='<image>\nTell me everything.')]
    steps, released, waits = [], threading.Event(), []

    def hold_at_step_10(module, args, output):
        steps.append(1)
        if len(steps) == 10:
            waits.append(released.wait(timeout=120))

    handle = tiny.llm.get_output_embeddings().register_forward_hook(hold_at_step_10)
    try:
        stream = chat(tiny, messages, [images[0]], stream=True, min_new_tokens=60,
                      max_new_tokens=60)
        first = next(stream)
        steps_at_first = len(steps)
        released.set()
        rest = list(stream)
    finally:
        released.set()
        handle.remove()
    assert first and rest
    assert steps_at_first <= 10 and waits == [True]  # generation waited for the reader
    assert len(steps) == 60
    assert first + ''.join(rest) == greedy_answer(tiny, messages, [images[0]],
                                                  min_new_tokens=60, max_new_tokens=60)
