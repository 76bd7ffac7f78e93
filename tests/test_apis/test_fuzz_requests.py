"""Fuzzing the server's request path (hypothesis): any body, however malformed, parses or is
refused with an :class:`APIError` of status 400-413, never another exception; what parses is
well formed (one visual per placeholder, text contents) and prepares or is refused the same way.
"""
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_openai_protocol import uri

from mmllava.apis.openai_media import MediaResolver
from mmllava.apis.openai_protocol import APIError, parse_json_body, parse_request

KEYS = ('model', 'messages', 'role', 'content', 'type', 'text', 'image_url', 'video_url', 'url',
        'stream', 'stream_options', 'include_usage', 'max_tokens', 'max_completion_tokens',
        'temperature', 'top_p', 'seed', 'stop', 'n', 'detail')


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, 'PNG')
    return buf.getvalue()


PNG = _png()
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=4),
    max_leaves=16)
urls = st.sampled_from([
    uri(PNG), uri(PNG[:40]), uri(b'GIF89a'), uri(PNG, 'image/svg+xml'), uri(b'\0' * 9, 'video/mp4'),
    'data:image/png;base64,@@', 'data:,', 'http://127.0.0.1/x.png', 'file:///etc/passwd',
    '/etc/passwd', '../../x.jpg', '']) | st.text(max_size=20)
good_text = st.text(st.characters(blacklist_categories=('Cs',)), max_size=30)
text = good_text | st.sampled_from(['<image>', '<video>', '</s>', '<|im_end|>', ' ', ''])
good_parts = st.one_of(
    st.fixed_dictionaries(dict(type=st.just('text'), text=good_text)),
    st.fixed_dictionaries(dict(type=st.just('image_url'),
                               image_url=st.fixed_dictionaries(dict(url=st.just(uri(PNG)))))))
parts = st.one_of(
    good_parts,
    st.fixed_dictionaries(dict(type=st.just('text'), text=text | json_values)),
    st.fixed_dictionaries(dict(type=st.sampled_from(['image_url', 'video_url', 'input_audio']),
                               image_url=st.fixed_dictionaries(dict(url=urls)) | json_values,
                               video_url=st.fixed_dictionaries(dict(url=urls)) | json_values)),
    json_values)
good_messages = st.fixed_dictionaries(dict(
    role=st.sampled_from(['system', 'user', 'assistant']),
    content=good_text | st.lists(good_parts, min_size=1, max_size=3)))
messages = st.lists(st.one_of(
    good_messages,
    st.fixed_dictionaries(dict(role=st.sampled_from(['system', 'user', 'assistant', 'tool', 1]),
                               content=text | st.lists(parts, max_size=3) | json_values)),
    json_values), max_size=4)
good_fields = dict(max_tokens=st.integers(1, 64), temperature=st.floats(0, 2),
                   top_p=st.floats(0.01, 1), seed=st.integers(0, 2**32), stream=st.booleans(),
                   stream_options=st.fixed_dictionaries(dict(include_usage=st.booleans())),
                   stop=good_text | st.lists(good_text, max_size=2), model=st.just('tiny'))
bodies = st.one_of(
    st.fixed_dictionaries(dict(messages=st.lists(good_messages, min_size=1, max_size=3)),
                          optional=good_fields),
    st.fixed_dictionaries(dict(messages=messages), optional={
        key: json_values | value for key, value in good_fields.items()}),
    json_values)


@pytest.fixture(scope='module')
def media():
    return MediaResolver(None, max_image_pixels=64 * 64)


def _parse(body, media):
    try:
        request = parse_request(body, 'tiny', media, max_text_chars=200)
    except APIError as e:
        assert 400 <= e.status <= 413, e.body()
        assert e.body()['error']['message'], e.body()
        return None
    return request


@settings(max_examples=800)
@given(body=bodies)
def test_any_body_parses_or_is_a_4xx(media, body):
    request = _parse(body, media)
    if request is None:
        return
    try:
        assert all(isinstance(m['content'], str) for m in request.messages)
        joined = ''.join(m['content'] for m in request.messages)
        # Every visual has its placeholder, and a placeholder typed as text is refused.
        assert joined.count('<image>') == len(request.images)
        assert joined.count('<video>') == len(request.videos)
        assert isinstance(request.stream, bool)
    finally:
        request.close()


@settings(max_examples=500)
@given(raw=st.binary(max_size=64) | bodies.map(lambda b: json.dumps(b).encode())
       | st.integers(1, 3000).map(lambda n: b'[' * n + b']' * n))
def test_any_bytes_are_json_or_invalid_json(raw):
    try:
        parse_json_body(raw)
    except APIError as e:
        assert (e.status, e.code) == (400, 'invalid_json'), e.body()


@pytest.fixture(scope='module')
def service():
    import torch

    from mmllava.apis import get_model
    from mmllava.apis.openai_service import ChatCompletionService
    torch.manual_seed(0)
    return ChatCompletionService(get_model('configs/llava/llava-tiny_vqa.py'), 'tiny',
                                 MediaResolver(None, max_image_pixels=64 * 64))


@settings(max_examples=300)
@given(body=bodies)
def test_what_parses_prepares_or_is_a_400(service, body):
    """Decoding and tokenizing (the template's turns, the context check) refuse only with 400."""
    try:
        request = service.parse(body)
    except APIError:
        return
    try:
        service.prepare(request)
    except APIError as e:
        assert e.status == 400 and e.param == 'messages', e.body()
        assert request.tmpdir is None  # a refused request is closed
        return
    try:
        inputs = request.prepared['inputs']
        assert inputs['input_ids'].shape[1] <= service.model.max_length
    finally:
        request.close()
