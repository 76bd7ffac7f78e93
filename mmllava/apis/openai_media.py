"""Images and clips of OpenAI ``image_url`` / ``video_url`` parts, read offline.

A server that fetched URLs would reach whatever its clients name, so only data URIs and local
files under one allowed folder are read; everything else is refused with an
:class:`~mmllava.apis.openai_protocol.APIError` that names the request field at fault (never a
path of the server's). A visual is measured before it is decoded: an image by its header, a
clip by its container (frame size, and frame count from the header or by counting packets,
which decodes nothing), so a small file that would decode to gigabytes is refused with 413.
Each request has a :class:`DecodeBudget`: the pixels of all its images and clip frames.
"""
import base64
import binascii
import io
import os
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import unquote, urlparse

from .openai_protocol import APIError

# Clip types a data URI may carry, and the suffix the decoder recognises them by.
VIDEO_MIME_SUFFIXES = {'video/mp4': '.mp4', 'video/webm': '.webm', 'video/quicktime': '.mov',
                       'video/x-matroska': '.mkv', 'video/avi': '.avi', 'video/x-msvideo': '.avi',
                       'image/gif': '.gif'}


def split_data_uri(url: str, param: str) -> Tuple[str, bytes]:
    """Split ``data:<mime>;base64,<payload>`` into the lower-cased mime type and the bytes.

    Raises:
        APIError: 400 ``invalid_data_uri`` for another shape or a payload that is not base64.
    """
    header, sep, payload = url[5:].partition(',')
    if not sep or not header.endswith(';base64'):
        raise APIError(400, 'A data URI must look like data:<mime>;base64,<data>', param,
                       'invalid_data_uri')
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, 'The data URI is not valid base64', param, 'invalid_data_uri')
    return header[:-len(';base64')].strip().lower(), data


MAX_IMAGE_PIXELS = 4096 * 4096
MAX_CLIP_BYTES = 20 * 2**20
MAX_CLIP_FRAMES = 3000  # 100 s at 30 frames/s
MAX_FRAME_PIXELS = 3840 * 2160
MAX_DECODE_PIXELS = 2**31  # a request's images and clip frames: ~1,000 frames of 1080p

#: One answer for every local path that is refused, whether or not it exists: a client cannot
#: learn which files the server has.
REFUSED_PATH = ('Local media must be a file under the folder the server allows '
                '(--allowed-local-media)')


class DecodeBudget:
    """The pixels one request may decode, images and clip frames together (413 past it).

    Args:
        limit (int): The pixels allowed.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.spent = 0

    def charge(self, pixels: int, param: str) -> None:
        """Count ``pixels`` more, or refuse the request when they do not fit."""
        if self.spent + pixels > self.limit:
            raise APIError(413, f'The request\'s images and clips would decode '
                           f'{self.spent + pixels} pixels, more than the {self.limit} this '
                           'server decodes for one request', param, 'decode_budget_exceeded')
        self.spent += pixels


class MediaResolver:
    """Turn ``image_url`` / ``video_url`` values into sources :func:`mmllava.apis.chat` reads.

    Args:
        allowed_dir (str, optional): The only folder local paths and ``file://`` URLs may be
            read from; ``None`` refuses every local path.
        max_image_pixels (int): Images with more pixels (checked from the header, before
            decoding) are refused with 413.
        max_clip_bytes (int): Larger clip files are refused with 413.
        max_clip_frames (int): Clips with more frames are refused with 413.
        max_frame_pixels (int): Clips with larger frames are refused with 413.
        max_decode_pixels (int): A request's budget (:class:`DecodeBudget`).
    """

    def __init__(self, allowed_dir: Optional[str], max_image_pixels: int = MAX_IMAGE_PIXELS,
                 max_clip_bytes: int = MAX_CLIP_BYTES, max_clip_frames: int = MAX_CLIP_FRAMES,
                 max_frame_pixels: int = MAX_FRAME_PIXELS,
                 max_decode_pixels: int = MAX_DECODE_PIXELS):
        self.allowed_dir = Path(allowed_dir).resolve() if allowed_dir else None
        self.max_image_pixels = max_image_pixels
        self.max_clip_bytes = max_clip_bytes
        self.max_clip_frames = max_clip_frames
        self.max_frame_pixels = max_frame_pixels
        self.max_decode_pixels = max_decode_pixels

    def budget(self) -> DecodeBudget:
        """A new request's decode budget."""
        return DecodeBudget(self.max_decode_pixels)

    def _local_path(self, url: str, param: str) -> Path:
        if self.allowed_dir is None:
            raise APIError(403, 'Local files are not served: start the server with '
                           '--allowed-local-media DIR, or send the file as a data URI', param,
                           'local_media_forbidden')
        path = unquote(urlparse(url).path) if url.startswith('file://') else url
        try:
            # resolve() follows symlinks, so a link inside the folder cannot point outside
            # it; a relative path is relative to the folder, never to the server's cwd.
            resolved = (self.allowed_dir / path).resolve()
        except (OSError, RuntimeError, ValueError):
            raise APIError(403, REFUSED_PATH, param, 'local_media_forbidden')
        if not resolved.is_relative_to(self.allowed_dir):
            raise APIError(403, REFUSED_PATH, param, 'local_media_forbidden')
        if not resolved.is_file():  # inside the allowed folder: saying so reveals nothing
            raise APIError(400, 'No such file in the allowed folder', param, 'file_not_found')
        return resolved

    @staticmethod
    def _check_scheme(url: str, param: str) -> None:
        if not isinstance(url, str) or not url:
            raise APIError(400, 'The url must be a non-empty string', param)
        scheme = urlparse(url).scheme.lower()
        if scheme in ('http', 'https', 'ftp'):
            raise APIError(400, 'This server is offline and does not fetch URLs: send the '
                           'image as a data URI (data:image/png;base64,...)', param,
                           'url_not_supported')

    def image(self, url: str, param: str, budget: Optional[DecodeBudget] = None):
        """A PIL RGB image from a data URI or an allowed local file.

        Raises:
            APIError: 400 for a URL, a bad data URI or an undecodable image; 403 for a local
                file outside the allowed folder; 413 for too many pixels.
        """
        from PIL import Image

        self._check_scheme(url, param)
        if url.startswith('data:'):
            _, data = split_data_uri(url, param)
            source = io.BytesIO(data)
        else:
            source = self._local_path(url, param)
        try:
            image = Image.open(source)
            # The header gives the size: refuse a decompression bomb before decoding it.
            if image.width * image.height > self.max_image_pixels:
                raise APIError(413, f'The image has {image.width}x{image.height} pixels, more '
                               f'than the {self.max_image_pixels} this server accepts', param,
                               'image_too_large')
            if budget is not None:
                budget.charge(image.width * image.height, param)
            image.load()
        except APIError:
            raise
        except Image.DecompressionBombError:
            raise APIError(413, 'The image is too large to decode', param, 'image_too_large')
        except (OSError, ValueError, SyntaxError) as e:
            raise APIError(400, f'The image could not be decoded ({type(e).__name__}): send '
                           'a PNG, JPEG, WebP, GIF or BMP file', param, 'invalid_image')
        from mmllava.datasets.transforms.loading import load_image
        return load_image(image)  # the loader's own RGB conversion (alpha, 16-bit, palette)

    def video(self, url: str, param: str, tmpdir: str,
              budget: Optional[DecodeBudget] = None) -> str:
        """A clip file path, measured: a data URI written to ``tmpdir``, or an allowed file.

        The clip decoder reads files, so a data URI is written out under ``tmpdir`` (its
        caller removes the folder once the answer is done).

        Raises:
            APIError: 400 for a URL, a bad data URI, a clip type not in
                :data:`VIDEO_MIME_SUFFIXES` or a file that is not a clip; 403 for a local file
                outside the allowed folder; 413 for a clip over a limit or the budget.
        """
        self._check_scheme(url, param)
        if url.startswith('data:'):
            mime, data = split_data_uri(url, param)
            suffix = VIDEO_MIME_SUFFIXES.get(mime)
            if suffix is None:
                raise APIError(400, f'Unsupported clip type {mime!r}: one of '
                               f'{", ".join(VIDEO_MIME_SUFFIXES)}', param, 'invalid_video')
            self._check_bytes(len(data), param)
            path = Path(tmpdir) / f'clip{len(list(Path(tmpdir).iterdir()))}{suffix}'
            path.write_bytes(data)
        else:
            path = self._local_path(url, param)
            self._check_bytes(os.path.getsize(path), param)
        self._measure_clip(str(path), param, budget or self.budget())
        return str(path)

    def _check_bytes(self, size: int, param: str) -> None:
        if size > self.max_clip_bytes:
            raise APIError(413, f'The clip is {size} bytes, more than the {self.max_clip_bytes} '
                           'this server accepts', param, 'video_too_large')

    def _measure_clip(self, path: str, param: str, budget: DecodeBudget) -> None:
        """Refuse a clip whose frames are too many or too large, before decoding any."""
        import av
        try:
            container = av.open(path)
        except Exception as e:  # av.error.*: not a container PyAV reads
            raise APIError(400, f'The clip could not be read ({type(e).__name__}): send an '
                           'mp4, webm, mov, mkv, avi or gif file', param, 'invalid_video')
        with container:
            if not container.streams.video:
                raise APIError(400, 'The clip has no video stream', param, 'invalid_video')
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > self.max_frame_pixels:
                raise APIError(413, f'The clip\'s frames are {width}x{height} pixels, more than '
                               f'the {self.max_frame_pixels} this server accepts', param,
                               'video_too_large')
            frames = stream.frames  # the header's count; 0 when it has none
            if frames <= 0:  # count packets: reading, not decoding
                try:
                    for packet in container.demux(stream):
                        frames += packet.size > 0
                        if frames > self.max_clip_frames:
                            break
                except Exception:  # a damaged tail: the decoder finds out, with its words
                    pass
        if frames > self.max_clip_frames:
            raise APIError(413, f'The clip has more than {self.max_clip_frames} frames, the '
                           'most this server accepts', param, 'video_too_large')
        # The decoder reads frames in order up to the last one it samples: all of them.
        budget.charge(max(frames, 1) * width * height, param)
