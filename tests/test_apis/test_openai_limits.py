"""The server's bounds without HTTP: clips measured before decoding, a request's decode budget,
the context check before any visual is read, errors without server paths, cancel and deadline."""
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_openai_protocol import CLIP, mp4, png, raises, uri

from mmllava.apis import get_model
from mmllava.apis.chat import chat
from mmllava.apis.openai_media import MediaResolver
from mmllava.apis.openai_protocol import APIError, parse_json_body, parse_request
from mmllava.apis.openai_service import ChatCompletionService, max_chars_per_token

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs/llava/llava-tiny_vqa.py')


def gif(frames=3, size=(16, 16)) -> bytes:
    """An animated GIF: its container states no frame count (they are counted)."""
    pictures = [Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8))
                for i in range(frames)]
    buf = io.BytesIO()
    pictures[0].save(buf, 'GIF', save_all=True, append_images=pictures[1:], duration=40)
    return buf.getvalue()


def clip_part(data: bytes, mime='video/mp4') -> dict:
    return dict(type='video_url', video_url=dict(url=uri(data, mime)))


def test_clips_are_measured_before_decoding(tmp_path):
    media = MediaResolver(None, max_clip_bytes=len(CLIP), max_clip_frames=4,
                          max_frame_pixels=16 * 16)
    assert Path(media.video(uri(CLIP, 'video/mp4'), 'p', str(tmp_path))).is_file()  # at the bounds
    with raises(413, 'p', 'video_too_large', f'The clip is {len(CLIP) + 1} bytes, more than the '
                f'{len(CLIP)} this server accepts'):
        media.video(uri(CLIP + b'\0', 'video/mp4'), 'p', str(tmp_path))
    media.max_clip_bytes = 10**6
    with raises(413, 'p', 'video_too_large', "The clip's frames are 32x16 pixels, more than "
                'the 256 this server accepts'):
        media.video(uri(mp4(size=(32, 16)), 'video/mp4'), 'p', str(tmp_path))
    with raises(413, 'p', 'video_too_large', 'The clip has more than 4 frames, the most this '
                'server accepts'):
        media.video(uri(mp4(frames=5), 'video/mp4'), 'p', str(tmp_path))
    # A GIF states no count: its frames are counted, not decoded.
    assert media.video(uri(gif(4), 'image/gif'), 'p', str(tmp_path))
    with raises(413, 'p', 'video_too_large'):
        media.video(uri(gif(5), 'image/gif'), 'p', str(tmp_path))


def test_one_budget_for_a_requests_images_and_clips():
    per_clip = 4 * 16 * 16
    media = MediaResolver(None, max_decode_pixels=2 * per_clip + 32 * 24)
    image = dict(type='image_url', image_url=dict(url=uri(png(1))))  # 32x24
    body = dict(messages=[dict(role='user', content=[clip_part(CLIP), image, clip_part(CLIP)])])
    with parse_request(body, 'tiny', media) as request:
        assert len(request.videos) == 2 and len(request.images) == 1
    body['messages'][0]['content'].append(image)
    with raises(413, 'messages[0].content[3].image_url', 'decode_budget_exceeded'):
        parse_request(body, 'tiny', media)
    with parse_request(dict(messages=[dict(role='user', content=[image])]), 'tiny', media):
        pass  # the budget is per request


def test_deep_or_odd_json_is_a_400():
    for raw in (b'[' * 100_000 + b']' * 100_000, b'{"a": ' + b'1' * 5000 + b'}', b'\xff\xfe{',
                b'{"a": NaN'):
        with raises(400, None, 'invalid_json'):
            parse_json_body(raw)


@pytest.fixture(scope='module')
def service():
    torch.manual_seed(0)
    return ChatCompletionService(get_model(TINY), 'tiny', MediaResolver(None))


def test_a_text_too_long_for_the_context_is_refused_before_any_visual(service, monkeypatch):
    bound = service.max_text_chars
    assert bound == service.model.max_length * max_chars_per_token(service.model.tokenizer)
    longest = max(len(service.model.tokenizer.id_to_token(i))
                  for i in range(service.model.tokenizer.vocab_size))
    assert max_chars_per_token(service.model.tokenizer) == 4 * longest
    read = []
    monkeypatch.setattr(service.media, 'image', lambda *a, **k: read.append(a))
    content = [dict(type='image_url', image_url=dict(url=uri(png(1)))),
               dict(type='text', text='x' * (bound + 1))]
    start = time.perf_counter()
    with raises(400, 'messages', 'context_length_exceeded'):
        service.parse(dict(messages=[dict(role='user', content=content)]))
    assert read == [] and time.perf_counter() - start < 1
    # Within the bound but over the context once tokenized: refused by prepare, no lock taken.
    monkeypatch.undo()
    request = service.parse(dict(messages=[dict(role='user', content='walk ' * 2000)]))
    with raises(400, 'messages', 'context_length_exceeded'):
        service.prepare(request)
    assert request.tmpdir is None and not service.lock.locked()


def test_clip_errors_name_the_field_not_the_servers_path(service):
    broken = bytearray(mp4(frames=8, size=(32, 32)))
    cut = slice(len(broken) // 10, len(broken) * 6 // 10)
    broken[cut] = b'\xff' * (cut.stop - cut.start)  # the container opens, the frames break
    body = dict(messages=[dict(role='user', content=[clip_part(bytes(broken)),
                                                     dict(type='text', text='What?')])])
    request = service.parse(body)
    folder = request.tmpdir.name
    with pytest.raises(APIError) as info:
        service.prepare(request)
    message = info.value.message
    assert info.value.status == 400 and 'messages[0].content[0].video_url' in message, message
    assert folder not in message and '/tmp' not in message, message


def h264(sizes) -> bytes:
    """A raw H.264 stream whose frames change size mid-way (one encoded run per size)."""
    import av
    data = b''
    for i, (w, h) in enumerate(sizes):
        buf = io.BytesIO()
        with av.open(buf, 'w', format='h264') as out:
            stream = out.add_stream('libx264', rate=8)
            stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
            for j in range(4):
                frame = np.full((h, w, 3), 30 * (i + j), np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
            out.mux(stream.encode())
        data += buf.getvalue()
    return data


def test_a_clip_whose_frames_grow_past_its_header_is_refused(service, tmp_path):
    from mmllava.datasets.transforms import load_video_frames
    from mmllava.datasets.transforms.video import FrameSizeError, strict_frame_size
    grows = tmp_path / 'grows.h264'
    grows.write_bytes(h264([(32, 32), (320, 320)]))
    assert len(load_video_frames(str(grows), 8)) == 8  # datasets accept a size change
    with strict_frame_size(), pytest.raises(FrameSizeError, match='frame 4 is 320x320 pixels, '
                                            'larger than the 32x32 its header states'):
        load_video_frames(str(grows), 8)
    assert len(load_video_frames(str(grows), 8)) == 8  # the context ends with its block
    # The header says 32x32 (within the limit and the budget): decoding finds the rest.
    body = dict(messages=[dict(role='user', content=[clip_part(grows.read_bytes()),
                                                     dict(type='text', text='What?')])])
    request = service.parse(body)
    with pytest.raises(APIError) as info:
        service.prepare(request)
    assert (info.value.status, info.value.code) == (413, 'video_too_large'), info.value.body()
    assert 'is 320x320 pixels, larger than the 32x32 its header' in info.value.message
    assert '/tmp' not in info.value.message and request.tmpdir is None
    shrinks = h264([(64, 64), (32, 32)])  # smaller frames are within the measure
    body['messages'][0]['content'][0] = clip_part(shrinks)
    assert service.prepare(service.parse(body)).prepared is not None


def test_cancel_and_deadline_end_the_wait_for_the_model(service):
    body = dict(messages=[dict(role='user', content='hi')], max_tokens=2)
    service.lock.acquire()  # another answer is being generated
    try:
        request = service.parse(body)
        threading.Timer(0.2, request.cancel).start()
        with raises(499, None, 'client_closed_request'):
            service.complete(request)
        service.request_timeout = 0.2
        start = time.perf_counter()
        with raises(503, None, 'timeout'):
            service.complete(service.parse(body))
        assert time.perf_counter() - start < 2
        events = service.stream(service.parse(dict(body, stream=True)))
        with raises(503, None, 'timeout'):
            next(events)
    finally:
        service.request_timeout = None
        service.lock.release()
    answer = service.complete(service.parse(body))['choices'][0]['message']['content']
    assert answer == chat(service.model, body['messages'], max_new_tokens=2)


def test_a_cancelled_generation_stops_at_its_next_token(service, monkeypatch):
    real = service.model.generate
    steps = []

    def slow(*args, **kwargs):
        stops = kwargs['eos_token_id']

        def step(input_ids, scores):
            steps.append(1)
            if len(steps) == 3:
                request.cancel()
            scores[:, stops] = float('-inf')  # it never ends by itself
            return scores

        kwargs['logits_processor'].append(step)
        return real(*args, **kwargs)

    monkeypatch.setattr(service.model, 'generate', slow)
    request = service.parse(dict(messages=[dict(role='user', content='hi')], max_tokens=50))
    body = service.complete(request)
    assert 3 <= len(steps) <= 4 and body['usage']['completion_tokens'] == len(steps)
    assert not service.lock.locked()
