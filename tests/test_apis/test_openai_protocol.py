"""The OpenAI protocol and service without HTTP: parsing, media rules, arguments, bodies."""
import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmllava.apis import get_model
from mmllava.apis.chat import chat, prepare_chat_inputs
from mmllava.apis.openai_media import REFUSED_PATH, MediaResolver, split_data_uri
from mmllava.apis.openai_protocol import (
    SSE_DONE,
    APIError,
    ChunkWriter,
    completion,
    generation_kwargs,
    models_list,
    parse_json_body,
    parse_messages,
    parse_request,
    sse_event,
    usage,
)
from mmllava.apis.openai_service import ChatCompletionService
from mmllava.datasets.transforms.loading import load_image

ROOT = Path(__file__).resolve().parents[2]
# A failure's kind, never its message (it may name the server's files).
INTERNAL = 'Internal error (RuntimeError): the server log has the details'
TINY = str(ROOT / 'configs/llava/llava-tiny_vqa.py')


def png(seed=0, size=(32, 24), mode='RGB') -> bytes:
    channels = len(mode)
    array = np.random.RandomState(seed).randint(0, 255, (size[1], size[0], channels),
                                                dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array if channels > 1 else array[..., 0], mode).save(buf, 'PNG')
    return buf.getvalue()


def mp4(frames=4, size=(16, 16), seed=0) -> bytes:
    """A real clip's bytes (the resolver measures clips by their container)."""
    import tempfile

    from mmllava.utils.video_io import write_mp4
    pixels = np.random.RandomState(seed).randint(0, 255, (frames, size[1], size[0], 3),
                                                 dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        write_mp4(f'{folder}/c.mp4', pixels)
        return Path(f'{folder}/c.mp4').read_bytes()


CLIP = mp4()


def uri(data: bytes, mime='image/png') -> str:
    return f'data:{mime};base64,' + base64.b64encode(data).decode()


def raises(status, param=None, code=None, match=None):
    """A context manager asserting an APIError's status, param and code (and message)."""

    class Check:
        def __enter__(self):
            return self

        def __exit__(self, kind, err, tb):
            assert kind is APIError, f'no APIError raised (got {kind})'
            assert (err.status, err.param, err.code) == (status, param, code), err.body()
            if match is not None:
                assert err.message == match, err.message
            return True

    return Check()


@pytest.fixture
def media(tmp_path):
    allowed = tmp_path / 'allowed'
    allowed.mkdir()
    return MediaResolver(str(allowed), max_image_pixels=10_000)


def test_error_body_and_json_body():
    err = APIError(404, 'gone', 'model', 'model_not_found')
    assert err.body() == dict(error=dict(message='gone', type='invalid_request_error',
                                         param='model', code='model_not_found'))
    assert APIError.internal(RuntimeError('boom')).body() == dict(error=dict(
        message=INTERNAL, type='server_error', param=None, code=None))
    assert parse_json_body(b'{"a": [1]}') == dict(a=[1])
    for raw in (b'{"messages": [}', b'\xff\xfe'):
        with raises(400, code='invalid_json'):
            parse_json_body(raw)


def test_data_uris():
    assert split_data_uri(uri(b'abc', 'Video/MP4'), 'p') == ('video/mp4', b'abc')
    with raises(400, 'p', 'invalid_data_uri',
                'A data URI must look like data:<mime>;base64,<data>'):
        split_data_uri('data:image/png,abc', 'p')
    with raises(400, 'p', 'invalid_data_uri', 'The data URI is not valid base64'):
        split_data_uri('data:image/png;base64,@@@', 'p')


def test_images_offline_and_bounded(media, tmp_path):
    image = media.image(uri(png(1, mode='RGBA')), 'p')
    assert image.mode == 'RGB' and image.size == (32, 24)
    # The dataset loader's own conversion (alpha over white), as training saw images.
    loaded = load_image(Image.open(io.BytesIO(png(1, mode='RGBA'))))
    assert np.array_equal(np.asarray(image), np.asarray(loaded))
    inside = media.allowed_dir / 'in.png'
    inside.write_bytes(png(2))
    for url in (str(inside), inside.as_uri()):
        assert media.image(url, 'p').size == (32, 24)
    outside = tmp_path / 'out.png'
    outside.write_bytes(png(3))
    (media.allowed_dir / 'link.png').symlink_to(outside)  # a link cannot lead outside
    (media.allowed_dir / 'dangling.png').symlink_to(tmp_path / 'gone.png')
    # Outside the folder, existing or not, linked to or not: one answer, so a client cannot
    # learn which of the server's files exist.
    refused = []
    for url in (str(media.allowed_dir / '..' / 'out.png'), str(media.allowed_dir / 'link.png'),
                str(tmp_path / 'nope.png'), str(media.allowed_dir / 'dangling.png'),
                '/etc/passwd', '/etc/no-such-file', 'file:///etc/passwd', '../out.png'):
        with pytest.raises(APIError) as info:
            media.image(url, 'p')
        refused.append(info.value.body())
    assert refused == [APIError(403, REFUSED_PATH, 'p', 'local_media_forbidden').body()] * 8
    # Inside it, a missing file may say so (and a relative path is the folder's).
    with raises(400, 'p', 'file_not_found', 'No such file in the allowed folder'):
        media.image(str(media.allowed_dir / 'nope.png'), 'p')
    assert media.image('in.png', 'p').size == (32, 24)
    with raises(403, 'p', 'local_media_forbidden'):
        MediaResolver(None, 10_000).image(str(inside), 'p')
    with raises(400, 'p', 'url_not_supported'):
        media.image('https://example.com/a.png', 'p')
    with raises(400, 'p', None, 'The url must be a non-empty string'):
        media.image(None, 'p')
    with raises(413, 'p', 'image_too_large', 'The image has 200x100 pixels, more than the '
                '10000 this server accepts'):
        media.image(uri(png(4, size=(200, 100))), 'p')
    with raises(400, 'p', 'invalid_image'):
        media.image(uri(b'not an image'), 'p')


def test_clips_written_to_the_request_folder(media, tmp_path):
    folder = tmp_path / 'clips'
    folder.mkdir()
    first = media.video(uri(CLIP, 'video/mp4'), 'p', str(folder))
    second = media.video(uri(CLIP, 'video/webm'), 'p', str(folder))
    assert [Path(first).name, Path(second).name] == ['clip0.mp4', 'clip1.webm']
    assert Path(first).read_bytes() == CLIP
    local = media.allowed_dir / 'a.mp4'
    local.write_bytes(CLIP)
    assert media.video(str(local), 'p', str(folder)) == str(local.resolve())
    with raises(400, 'p', 'invalid_video'):
        media.video(uri(b'x', 'application/pdf'), 'p', str(folder))
    with raises(400, 'p', 'invalid_video'):  # not a clip: refused before it reaches a decoder
        media.video(uri(b'mp4 bytes', 'video/mp4'), 'p', str(folder))


def test_parts_become_placeholders_where_they_are(media, tmp_path):
    image = dict(type='image_url', image_url=dict(url=uri(png(5))))
    clip = dict(type='video_url', video_url=dict(url=uri(CLIP, 'video/mp4')))
    messages = [
        dict(role='system', content='Be brief.'),
        dict(role='user', content=[image, dict(type='text', text='What is it?')]),
        dict(role='assistant', content='A cat.'),
        dict(role='user', content=[dict(type='text', text='And'), clip, image,
                                   dict(type='text', text='here?')]),
    ]
    out, images, videos = parse_messages(messages, media, str(tmp_path))
    assert out == [dict(role='system', content='Be brief.'),
                   dict(role='user', content='<image>\nWhat is it?'),
                   dict(role='assistant', content='A cat.'),
                   dict(role='user', content='And\n<video>\n<image>\nhere?')]
    assert len(images) == 2 and [Path(v).read_bytes() for v in videos] == [CLIP]


@pytest.mark.parametrize('messages,param,message', [
    ('hi', 'messages', 'messages must be a non-empty list'),
    ([], 'messages', 'messages must be a non-empty list'),
    (['hi'], 'messages[0]', 'Each message must be an object with role and content'),
    ([dict(role='robot', content='hi')], 'messages[0].role',
     "Unknown role 'robot': one of system, user, assistant"),
    ([dict(role='user', content='<image>\nhi')], 'messages[0].content',
     'Send images and clips as image_url / video_url parts, not as <image> / <video> in the '
     'text'),
    ([dict(role='user', content=[dict(type='text', text='a'), dict(type='text', text='<video>')])],
     'messages[0].content[1]', 'Send images and clips as image_url / video_url parts, not as '
     '<image> / <video> in the text'),
    ([dict(role='user', content=3)], 'messages[0].content',
     'content must be a string or a list of parts'),
    ([dict(role='user', content='hi'), dict(role='assistant', content=[
        dict(type='image_url', image_url=dict(url='x'))])], 'messages[1].content[0]',
     'Only user messages may hold images or clips, not assistant ones'),
    ([dict(role='user', content=[dict(type='audio', audio='x')])], 'messages[0].content[0]',
     None),
])
def test_malformed_messages(media, tmp_path, messages, param, message):
    with raises(400, param, None, message):
        parse_messages(messages, media, str(tmp_path))


def test_generation_arguments():
    assert generation_kwargs({}) == dict(do_sample=False, num_beams=1)
    assert generation_kwargs(dict(max_tokens=7, max_completion_tokens=9)) == dict(
        max_new_tokens=7, do_sample=False, num_beams=1)
    assert generation_kwargs(dict(max_completion_tokens=9))['max_new_tokens'] == 9
    assert generation_kwargs(dict(temperature=0, top_p=0.5)) == dict(do_sample=False,
                                                                       num_beams=1)
    sampled = generation_kwargs(dict(temperature=1, top_p=0.25, n=1))
    assert sampled == dict(do_sample=True, temperature=1.0, top_p=0.25)
    assert isinstance(sampled['temperature'], float)
    assert generation_kwargs(dict(temperature=0.5)) == dict(do_sample=True, temperature=0.5)


@pytest.mark.parametrize('body,param,message', [
    (dict(temperature='hot'), 'temperature', "temperature must be a number in [0, 2], got 'hot'"),
    (dict(temperature=2.5), 'temperature', 'temperature must be a number in [0, 2], got 2.5'),
    (dict(temperature=True), 'temperature', 'temperature must be a number in [0, 2], got True'),
    (dict(top_p=0), 'top_p', 'top_p must be greater than 0'),
    (dict(top_p=1.5), 'top_p', 'top_p must be a number in [0, 1], got 1.5'),
    (dict(max_tokens=0), 'max_tokens', 'max_tokens must be an integer in [1, 1048576], got 0'),
    (dict(max_tokens=2.0), 'max_tokens',
     'max_tokens must be an integer in [1, 1048576], got 2.0'),
    (dict(max_completion_tokens=-1), 'max_completion_tokens',
     'max_completion_tokens must be an integer in [1, 1048576], got -1'),
    (dict(n=2), 'n', 'n must be 1 (one answer per request), got 2'),
])
def test_bad_generation_arguments(body, param, message):
    with raises(400, param, None, message):
        generation_kwargs(body)


def test_request_checks_and_its_clip_folder(media):
    user = [dict(role='user', content='hi')]
    with raises(400, None, None, 'The request body must be a JSON object'):
        parse_request([1], 'tiny', media)
    with raises(404, 'model', 'model_not_found',
                "The model 'gpt-4' is not served here; this server serves 'tiny'"):
        parse_request(dict(model='gpt-4', messages=user), 'tiny', media)
    with raises(400, 'messages', None, 'messages is required'):
        parse_request(dict(max_tokens=3), 'tiny', media)
    with raises(400, 'stream', None, "stream must be true or false, got 'yes'"):
        parse_request(dict(messages=user, stream='yes'), 'tiny', media)
    with raises(400, 'stream_options', None, 'stream_options must be an object'):
        parse_request(dict(messages=user, stream_options=[]), 'tiny', media)
    with raises(400, 'seed', None):
        parse_request(dict(messages=user, seed='1'), 'tiny', media)
    # The generation fields are checked before any visual is read.
    with raises(400, 'temperature'):
        parse_request(dict(messages=[dict(role='user', content=[
            dict(type='image_url', image_url=dict(url='http://x'))])], temperature=9),
            'tiny', media)

    clip = dict(type='video_url', video_url=dict(url=uri(CLIP, 'video/mp4')))
    request = parse_request(dict(model='tiny', messages=[dict(role='user', content=[clip])],
                                 max_tokens=3, stream=True, seed=7,
                                 stream_options=dict(include_usage=1)), 'tiny', media)
    assert (request.stream, request.include_usage, request.seed) == (True, True, 7)
    assert request.generate_kwargs == dict(max_new_tokens=3, do_sample=False, num_beams=1)
    assert request.messages == [dict(role='user', content='<video>')]
    folder = Path(request.videos[0]).parent
    with request:
        assert folder.is_dir()
    assert not folder.exists()
    # A request refused half-way leaves no folder behind either.
    before = set(os.listdir(folder.parent))
    with raises(400, 'messages[0].content[1].video_url', 'invalid_video'):
        parse_request(dict(messages=[dict(role='user', content=[
            clip, dict(type='video_url', video_url=dict(url=uri(b'x', 'text/plain')))])]),
            'tiny', media)
    assert set(os.listdir(folder.parent)) == before


def test_response_bodies():
    assert models_list('tiny', 5) == dict(object='list', data=[dict(
        id='tiny', object='model', created=5, owned_by='mmllava')])
    assert usage(10, 3) == dict(prompt_tokens=10, completion_tokens=3, total_tokens=13)
    body = completion('tiny', 'An answer.', 'stop', usage(1, 2))
    assert body['id'].startswith('chatcmpl-') and body['object'] == 'chat.completion'
    assert body['choices'] == [dict(index=0, message=dict(role='assistant', content='An answer.'),
                                    finish_reason='stop')]
    writer = ChunkWriter('tiny')
    first, last = writer.delta(dict(role='assistant', content='')), writer.delta({}, 'length')
    assert first['id'] == last['id'] and first['object'] == 'chat.completion.chunk'
    assert last['choices'] == [dict(index=0, delta={}, finish_reason='length')]
    assert writer.usage(usage(1, 2))['choices'] == []
    assert sse_event(dict(a='é')) == 'data: {"a": "\\u00e9"}\n\n'
    assert json.loads(sse_event(first)[len('data: '):]) == first
    assert SSE_DONE == 'data: [DONE]\n\n'


# ---------------------------------------------------------------------- the service
@pytest.fixture(scope='module')
def service(tmp_path_factory):
    torch.manual_seed(0)
    media = MediaResolver(None, 1 << 20)
    return ChatCompletionService(get_model(TINY), 'tiny', media)


def ask(service, *parts, **fields):
    content = [dict(type='image_url', image_url=dict(url=uri(png(9)))),
               *[dict(type='text', text=p) for p in parts]]
    return service.parse(dict(messages=[dict(role='user', content=content)], **fields))


def test_service_answers_as_chat(service):
    expected = chat(service.model, [dict(role='user', content='<image>\nWhat is it?')],
                    [Image.open(io.BytesIO(png(9)))], max_new_tokens=6)
    body = service.complete(ask(service, 'What is it?', max_tokens=6))
    assert body['choices'][0]['message']['content'] == expected
    prompt = prepare_chat_inputs(service.model, [dict(role='user', content='<image>\nWhat is it?')],
                                 [Image.open(io.BytesIO(png(9)))])['inputs']['input_ids']
    assert body['usage'] == usage(prompt.shape[1], body['usage']['completion_tokens'])
    assert 0 < body['usage']['completion_tokens'] <= 6
    events = list(service.stream(ask(service, 'What is it?', max_tokens=6, stream=True,
                                     stream_options=dict(include_usage=True))))
    assert events[0]['choices'][0]['delta'] == dict(role='assistant', content='')
    assert ''.join(e['choices'][0]['delta'].get('content', '') for e in events[1:-1]) == expected
    assert events[-2]['choices'][0]['finish_reason'] == body['choices'][0]['finish_reason']
    assert events[-1]['usage'] == body['usage']
    assert not service.lock.locked()
    one = service.complete(ask(service, 'What is it?', max_tokens=1))
    assert one['choices'][0]['finish_reason'] == 'length'
    assert one['usage']['completion_tokens'] == 1


def test_service_refusal_comes_at_the_first_body(service):
    parts = [dict(type='image_url', image_url=dict(url=uri(png(1, size=(8, 8)))))] * 40
    request = service.parse(dict(messages=[dict(role='user', content=parts)], stream=True))
    events = service.stream(request)
    with raises(400, 'messages', 'context_length_exceeded'):
        next(events)
    assert not service.lock.locked() and request.tmpdir is None


def test_service_stream_holds_the_lock_until_closed(service):
    events = service.stream(ask(service, 'Describe it.', max_tokens=16, stream=True))
    next(events)
    assert service.lock.locked()
    events.close()  # a client gone: the generation stops and the model is free
    assert not service.lock.locked()


def test_service_seeded_sampling(service):
    fields = dict(max_tokens=8, temperature=1.0, top_p=0.95, seed=3)
    answers = [service.complete(ask(service, 'What is it?', **fields))['choices'][0]['message']
               ['content'] for _ in range(2)]
    torch.manual_seed(3)
    local = chat(service.model, [dict(role='user', content='<image>\nWhat is it?')],
                 [Image.open(io.BytesIO(png(9)))], max_new_tokens=8, do_sample=True,
                 temperature=1.0, top_p=0.95)
    greedy = service.complete(ask(service, 'What is it?', max_tokens=8))
    assert answers[0] == answers[1] == local != greedy['choices'][0]['message']['content']


def test_service_error_mid_stream(service, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('boom')

    monkeypatch.setattr(service.model, 'generate', broken)
    events = list(service.stream(ask(service, 'What is it?', stream=True)))
    assert events[-1] == APIError.internal(RuntimeError('boom')).body()
    assert not service.lock.locked()
    with pytest.raises(RuntimeError, match='boom'):
        service.complete(ask(service, 'What is it?'))
    assert not service.lock.locked()
