"""Images and clips of OpenAI ``image_url`` / ``video_url`` parts, read offline.

A server that fetched URLs would reach whatever its clients name, so only data URIs and local
files under one allowed folder are read; everything else is refused with an
:class:`~mmllava.apis.openai_protocol.APIError` that names the request field at fault.
"""
import base64
import binascii
import io
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


class MediaResolver:
    """Turn ``image_url`` / ``video_url`` values into sources :func:`mmllava.apis.chat` reads.

    Args:
        allowed_dir (str, optional): The only folder local paths and ``file://`` URLs may be
            read from; ``None`` refuses every local path.
        max_image_pixels (int): Images with more pixels (checked from the header, before
            decoding) are refused with 413.
    """

    def __init__(self, allowed_dir: Optional[str], max_image_pixels: int):
        self.allowed_dir = Path(allowed_dir).resolve() if allowed_dir else None
        self.max_image_pixels = max_image_pixels

    def _local_path(self, url: str, param: str) -> Path:
        path = unquote(urlparse(url).path) if url.startswith('file://') else url
        if self.allowed_dir is None:
            raise APIError(403, 'Local files are not served: start the server with '
                           '--allowed-local-media DIR, or send the file as a data URI', param,
                           'local_media_forbidden')
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            raise APIError(400, f'No such file: {path}', param, 'file_not_found')
        # resolve() follows symlinks, so a link inside the folder cannot point outside it.
        if not resolved.is_relative_to(self.allowed_dir):
            raise APIError(403, f'{path} is outside the folder allowed for local media',
                           param, 'local_media_forbidden')
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

    def image(self, url: str, param: str):
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

    def video(self, url: str, param: str, tmpdir: str) -> str:
        """A clip file path: a data URI written to ``tmpdir``, or an allowed local file.

        The clip decoder reads files, so a data URI is written out under ``tmpdir`` (its
        caller removes the folder once the answer is done).

        Raises:
            APIError: 400 for a URL, a bad data URI or a clip type not in
                :data:`VIDEO_MIME_SUFFIXES`; 403 for a local file outside the allowed folder.
        """
        self._check_scheme(url, param)
        if not url.startswith('data:'):
            return str(self._local_path(url, param))
        mime, data = split_data_uri(url, param)
        suffix = VIDEO_MIME_SUFFIXES.get(mime)
        if suffix is None:
            raise APIError(400, f'Unsupported clip type {mime!r}: one of '
                           f'{", ".join(VIDEO_MIME_SUFFIXES)}', param, 'invalid_video')
        path = Path(tmpdir) / f'clip{len(list(Path(tmpdir).iterdir()))}{suffix}'
        path.write_bytes(data)
        return str(path)
