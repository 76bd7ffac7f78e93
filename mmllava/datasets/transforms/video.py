"""Video loading: uniformly sampled frames of a clip, and images and clips in placeholder order.

Clips are decoded with PyAV: it has wheels on PyPI with FFmpeg bundled for every platform and is
maintained; decord has had no recent wheels. Besides video files, mmaction2's rawframe folders
(``img_00001.jpg`` ...) and in-memory ``(T, H, W, 3)`` uint8 arrays are accepted.

Representation: after :class:`LoadVisuals`, ``results['images']`` is the flat list of the frames of
all visuals, in placeholder order (an image is one frame), so ``PadToSquare`` and
``CLIPResizeCrop`` apply per frame unchanged; ``results['visual_frames']`` gives the frames of each
visual. The model splits its encoded frames by that list and pools each clip.
"""
import os
import os.path as osp
import re
import warnings
import zlib
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image

from mmllava.registry import TRANSFORMS
from mmllava.structures import (
    VISUAL_PLACEHOLDERS,
    num_visual_tokens,
)

from .loading import load_image, resolve_source

VideoSource = Union[str, Path, np.ndarray]
# A dataset's own frame choice: (frames of the clip, its frame rate or None, frames wanted)
# -> indices.
FrameIndexFn = Callable[[int, Optional[float], int], Sequence[int]]
_PLACEHOLDER = re.compile('|'.join(re.escape(p) for p in VISUAL_PLACEHOLDERS))


def sample_frame_indices(total_frames: int, num_frames: int,
                         jitter: bool = False) -> np.ndarray:
    """One frame from each of ``num_frames`` equal segments of the clip, in order.

    Test mode (``jitter=False``): each segment's midpoint,
    ``index_i = floor((i + 0.5) * total_frames / num_frames)`` (mmaction2's test-mode
    midpoints). Training (``jitter=True``): a uniformly random point of each segment,
    ``floor((i + u_i) * total_frames / num_frames)`` with ``u_i ~ U[0, 1)`` drawn from NumPy's
    global generator (which mmengine seeds per worker), as mmaction2's ``SampleFrames`` in
    train mode draws a random offset inside each segment (its segments have a whole number of
    frames and leave the last ``total % num_frames`` out; these cover the whole clip). With
    fewer frames than requested, frames repeat, each in its place, so the clip keeps its order.
    """
    if total_frames < 1:
        raise ValueError(f'cannot sample from {total_frames} frames')
    if num_frames < 1:
        raise ValueError(f'num_frames must be positive, got {num_frames}')
    offset = np.random.random(num_frames) if jitter else 0.5
    i = np.arange(num_frames, dtype=np.float64)
    index = np.floor((i + offset) * total_frames / num_frames).astype(np.int64)
    return np.minimum(index, total_frames - 1)


def _indices(total: int, num_frames: int, what: str, jitter: bool = False) -> np.ndarray:
    if total < num_frames:
        warnings.warn(f'{what} has {total} frames, fewer than the {num_frames} requested: '
                      'frames are repeated')
    return sample_frame_indices(total, num_frames, jitter)


def _chosen_indices(total: int, num_frames: int, what: str, jitter: bool,
                    index_fn: Optional[FrameIndexFn], fps: Optional[float]) -> np.ndarray:
    """:func:`sample_frame_indices`, or the indices ``index_fn`` chooses (checked)."""
    if index_fn is None:
        return _indices(total, num_frames, what, jitter)
    wanted = np.asarray(index_fn(total, fps, num_frames), dtype=np.int64)
    if wanted.ndim != 1 or len(wanted) == 0 or wanted.min() < 0 or wanted.max() >= total:
        raise ValueError(f'{what} has {total} frames: the frame indices chosen for it, '
                         f'{wanted.tolist()}, are not within [0, {total})')
    return wanted


class PartialVideoWarning(UserWarning):
    """A clip decoded only in part: its frames are sampled from the part that decodes."""


#: The default share of a clip's frames (as its header states them) that must decode.
MIN_DECODED_FRACTION = 0.5

_STRICT_FRAME_SIZE: ContextVar[bool] = ContextVar('strict_frame_size', default=False)


class FrameSizeError(ValueError):
    """A decoded frame larger than its stream's header states (see :func:`strict_frame_size`)."""


@contextmanager
def strict_frame_size():
    """Within it, a clip frame larger than the size its stream's header states is an error.

    A server measures a clip by its header before decoding (frame size x frames); a stream
    that grows its frames mid-way would decode past that measure, so the server decodes in
    this context and the first such frame raises :class:`FrameSizeError`, before it is
    converted. Datasets keep accepting clips whose size changes.
    """
    token = _STRICT_FRAME_SIZE.set(True)
    try:
        yield
    finally:
        _STRICT_FRAME_SIZE.reset(token)


def _decode_video(path: str, num_frames: int, jitter: bool = False,
                  min_decoded_fraction: float = MIN_DECODED_FRACTION,
                  index_fn: Optional[FrameIndexFn] = None) -> List[np.ndarray]:
    import av  # optional dependency: only clips given as files need it

    def open_stream():
        try:
            container = av.open(path)
        except Exception as e:  # av.error.* (InvalidDataError, ...)
            raise ValueError(f'cannot read video {path!r}: {type(e).__name__}: {e}') from e
        if not container.streams.video:
            container.close()
            raise ValueError(f'cannot read video {path!r}: it has no video stream')
        return container, container.streams.video[0]

    def read(wanted=(), last=None):
        """Decode in order up to frame ``last``: (wanted frames, frames seen, error or None).

        A decode error ends the clip where it happens (a truncated or damaged tail), so the
        frames before it stay usable; the caller decides whether they are enough.
        """
        frames, seen, error = {}, 0, None
        container, stream = open_stream()
        width, height = stream.codec_context.width, stream.codec_context.height  # the header's
        strict = _STRICT_FRAME_SIZE.get()
        with container:
            try:
                for frame in container.decode(stream):
                    if strict and frame.width * frame.height > width * height:
                        raise FrameSizeError(
                            f'video {path!r}: frame {seen} is {frame.width}x{frame.height} '
                            f'pixels, larger than the {width}x{height} its header states')
                    if seen in wanted:
                        frames[seen] = frame.to_ndarray(format='rgb24')
                    seen += 1
                    if last is not None and seen > last:
                        break
            except FrameSizeError:
                raise
            except Exception as e:  # av.error.* from a damaged packet
                error = f'{type(e).__name__}: {e}'
        return frames, seen, error

    def no_frames(error):
        why = f': {error}' if error else ''
        return ValueError(f'cannot decode video {path!r}: no frame decodes{why}')

    container, stream = open_stream()
    stated = stream.frames  # container metadata: 0 when unknown, sometimes wrong
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    container.close()
    total = stated
    if total <= 0:  # no header count: count the frames that decode
        _, total, error = read()
        if total == 0:
            raise no_frames(error)
        if error:
            warnings.warn(f'video {path!r}: {total} frames decode, then {error}; '
                          f'sampling from those {total}', PartialVideoWarning)
    wanted = _chosen_indices(total, num_frames, f'video {path!r}', jitter, index_fn, fps)
    frames, seen, error = read(set(wanted.tolist()), int(wanted.max()))
    if len(frames) == len(set(wanted.tolist())):
        return [frames[i] for i in wanted.tolist()]
    # The stream ended (or broke) before the frames its header promised.
    if seen == 0:
        raise no_frames(error)
    ending = f'then {error}' if error else 'then the stream ends'
    if seen < min_decoded_fraction * total:
        raise ValueError(f'video {path!r}: only {seen} of the {total} frames its header states '
                         f'decode ({ending}), fewer than min_decoded_fraction='
                         f'{min_decoded_fraction:g} of them')
    warnings.warn(f'video {path!r}: {seen} of the {total} frames its header states decode '
                  f'({ending}); sampling {num_frames} from those {seen}', PartialVideoWarning)
    wanted = _chosen_indices(seen, num_frames, f'video {path!r}', jitter, index_fn, fps)
    frames, _, error = read(set(wanted.tolist()), int(wanted.max()))
    if len(frames) < len(set(wanted.tolist())):  # it decoded differently the second time
        raise no_frames(error)
    return [frames[i] for i in wanted.tolist()]


def _load_rawframes(folder: str, num_frames: int, total_frames: Optional[int],
                    filename_tmpl: str, start_index: int,
                    jitter: bool = False,
                    index_fn: Optional[FrameIndexFn] = None) -> List[np.ndarray]:
    if not osp.isdir(folder):
        raise FileNotFoundError(f'rawframe folder not found: {folder!r}')
    if total_frames is None:
        # Count the consecutive frames present, as a list file would state them.
        total_frames = 0
        while osp.isfile(osp.join(folder, filename_tmpl.format(start_index + total_frames))):
            total_frames += 1
        if total_frames == 0:
            raise ValueError(f'rawframe folder {folder!r} holds no '
                             f'{filename_tmpl.format(start_index)!r}')
    else:
        last = osp.join(folder, filename_tmpl.format(start_index + total_frames - 1))
        if total_frames < 1 or not osp.isfile(last):
            raise ValueError(f'rawframe folder {folder!r} has fewer frames than the '
                             f'{total_frames} its list says ({last!r} is missing)')
    wanted = _chosen_indices(total_frames, num_frames, f'rawframe folder {folder!r}', jitter,
                             index_fn, None)
    cache = {}
    for i in wanted.tolist():  # repeated indices decode once
        if i not in cache:
            cache[i] = np.array(load_image(
                osp.join(folder, filename_tmpl.format(start_index + i))), dtype=np.uint8)
    return [cache[i] for i in wanted.tolist()]


def load_video_frames(src: VideoSource, num_frames: int = 8,
                      total_frames: Optional[int] = None,
                      filename_tmpl: str = 'img_{:05}.jpg',
                      start_index: int = 1, jitter: bool = False,
                      min_decoded_fraction: float = MIN_DECODED_FRACTION,
                      frame_index_fn: Optional[FrameIndexFn] = None) -> List[np.ndarray]:
    """Load ``num_frames`` uniformly sampled frames of a clip as (H, W, 3) uint8 RGB arrays.

    Args:
        src (str | Path | np.ndarray): a video file (decoded with PyAV, see the module doc), a
            rawframe folder (mmaction2 layout), or a (T, H, W, 3) uint8 array.
        num_frames (int): Frames to sample (:func:`sample_frame_indices`). A clip with fewer
            frames has some repeated, with a warning.
        total_frames (int, optional): Rawframe folders only: the frame count its list states;
            counted from the files when not given.
        filename_tmpl (str): Rawframe file names. Defaults to mmaction2's ``'img_{:05}.jpg'``.
        start_index (int): Index of the first rawframe file. Defaults to 1.
        jitter (bool): Training: a random frame of each segment instead of its midpoint
            (:func:`sample_frame_indices`).
        min_decoded_fraction (float): Video files only: a clip whose stream ends or breaks
            before its header's frame count is sampled from the frames that decode, with a
            :class:`PartialVideoWarning` giving the counts, if at least this share of them
            decodes; below it, a ``ValueError``. 0 accepts any decodable part.
        frame_index_fn (callable, optional): A benchmark's own frame choice instead of
            :func:`sample_frame_indices`: called with the clip's frame count (a video's header
            count, or the frames that decode; a folder's frames; an array's length), its
            frame rate (a video stream's average rate; None for folders and arrays) and
            ``num_frames``, it returns the 0-based indices to load, in order (MVBench's
            time bounds, :func:`mmllava.datasets.mvbench.mvbench_frame_indices`).
            ``jitter`` is then unused.

    Returns:
        list[np.ndarray]: ``num_frames`` (H, W, 3) uint8 frames in temporal order.

    Raises:
        FileNotFoundError: ``src`` is a path that does not exist.
        ValueError: an unreadable or empty video, a rawframe folder with fewer frames than
            ``total_frames``, a clip of which less than ``min_decoded_fraction`` decodes,
            or an array of the wrong shape or type.
    """
    if isinstance(src, np.ndarray):
        if src.ndim != 4 or src.shape[-1] != 3 or src.dtype != np.uint8:
            raise ValueError('a clip array must be (T, H, W, 3) uint8, '
                             f'got {src.dtype} {src.shape}')
        if len(src) == 0:
            raise ValueError('the clip array has no frames')
        wanted = _chosen_indices(len(src), num_frames, 'the clip array', jitter,
                                 frame_index_fn, None)
        return [np.ascontiguousarray(src[i]) for i in wanted.tolist()]
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError('a video source must be a path or a (T, H, W, 3) uint8 array, '
                        f'got {type(src).__name__}')
    path = os.fspath(src)
    if osp.isdir(path):
        return _load_rawframes(path, num_frames, total_frames, filename_tmpl, start_index,
                               jitter, frame_index_fn)
    if not osp.exists(path):
        raise FileNotFoundError(f'video not found: {path!r}')
    return _decode_video(path, num_frames, jitter, min_decoded_fraction, frame_index_fn)


def _placeholder_order(results: dict) -> Optional[List[str]]:
    """The ``<image>``/``<video>`` placeholders of the conversation in order (None: no text)."""
    if results.get('messages') is not None:
        texts = [m.get('content') or '' for m in results['messages'] if isinstance(m, dict)]
    elif results.get('conversations') is not None:
        texts = [t.get('value') or '' for t in results['conversations']]
    else:
        return None
    return [m.group(0)[1:-1] for t in texts for m in _PLACEHOLDER.finditer(str(t))]


def _visual_error(error: BaseException) -> BaseException:
    """Mark an error of reading a visual (a missing, truncated or undecodable file): in test mode
    such a sample is a miss to score (:mod:`mmllava.datasets.invalid_samples`), while any
    other error (a config's, a conversation's) still stops the run."""
    error.visual_error = True
    return error


@TRANSFORMS.register_module()
class LoadVisuals(BaseTransform):
    """Load a sample's images and clips, ordered as their placeholders in the conversation.

    One transform for both, replacing ``LoadImages`` in pipelines with clips: it reads
    ``images`` and ``videos`` and walks the ``<image>``/``<video>`` placeholders of ``messages``
    (or ``conversations``) to interleave them; without a conversation, images come first.

    Required keys: ``images`` and/or ``videos`` (lists of sources; a missing key is an empty
    list). Optional keys: ``messages`` / ``conversations``, ``img_prefix`` (or else
    ``data_root``) which relative paths join, ``total_frames`` (one per video or None; rawframe
    folders), ``sample_id`` (named in errors), ``filename_tmpl`` (the sample's rawframe file
    names, ``'{:05d}.jpg'`` for MVBench; default mmaction2's ``'img_{:05}.jpg'``) and
    ``frame_index_fn`` (the sample's own frame choice for its clips, e.g. MVBench's time
    bounds: see :func:`load_video_frames`; it is given ``num_frames``).
    Videos are files PyAV decodes (GIFs included), rawframe folders or arrays.

    Modified keys: ``images``, the flat list of (H, W, 3) uint8 frames of all visuals in
    placeholder order.

    Added keys: ``visual_frames`` (frames per visual, 1 for an image), ``visual_kinds``
    (``'image'`` / ``'video'``), ``num_visual_tokens`` (placeholder tokens per visual, read by
    ``TokenizeConversation``), ``img_paths`` / ``ori_shapes`` / ``img_shapes`` per frame.

    Args:
        num_frames (int): Frames sampled per clip. Defaults to 8 (Video-LLaVA).
        num_image_tokens (int): Tokens of one encoded frame (576 for CLIP ViT-L/14-336).
        video_pooling (str | dict, optional): The model's ``video_pooling``, to count a clip's
            tokens; a clip of one frame counts as an image, as the model treats it.
        frame_order (str): ``'temporal'`` (default); ``'shuffled'`` (a random permutation of
            each clip's sampled frames, seeded by ``seed`` and the sample id, so the same
            sample is shuffled the same way every time) or ``'reversed'``: probes of whether
            a model uses frame order.
        seed (int): Seed of ``'shuffled'``.
        temporal_jitter (bool): Training pipelines: sample a random frame of each of the
            ``num_frames`` segments (mmaction2's train-mode ``SampleFrames``), so every epoch
            sees other frames; test pipelines keep the segment midpoints (the default).
        min_decoded_fraction (float): The share of a clip file's frames (as its header states
            them) that must decode; a clip that decodes only in part above it is sampled from
            that part with a :class:`PartialVideoWarning` (:func:`load_video_frames`).
    """

    FRAME_ORDERS = ('temporal', 'shuffled', 'reversed')

    def __init__(self, num_frames: int = 8, num_image_tokens: Optional[int] = 576,
                 video_pooling: Union[None, str, dict] = None, frame_order: str = 'temporal',
                 seed: int = 0, temporal_jitter: bool = False,
                 min_decoded_fraction: float = MIN_DECODED_FRACTION):
        if not 0 <= min_decoded_fraction <= 1:
            raise ValueError('min_decoded_fraction must be within [0, 1], '
                             f'got {min_decoded_fraction!r}')
        if frame_order not in self.FRAME_ORDERS:
            raise ValueError(f'frame_order must be one of {self.FRAME_ORDERS}, '
                             f'got {frame_order!r}')
        self.num_frames = num_frames
        self.num_image_tokens = num_image_tokens
        num_visual_tokens(video_pooling, 2, 4)  # an unknown pooling fails here, not per sample
        self.video_pooling = video_pooling
        self.frame_order = frame_order
        self.seed = seed
        self.temporal_jitter = temporal_jitter
        self.min_decoded_fraction = min_decoded_fraction

    def _reorder(self, frames: List[np.ndarray], sample_id, index: int) -> List[np.ndarray]:
        if self.frame_order == 'reversed':
            return frames[::-1]
        if self.frame_order == 'shuffled':
            key = zlib.crc32(f'{self.seed}/{sample_id}/{index}'.encode())
            order = np.random.default_rng(key).permutation(len(frames))
            return [frames[i] for i in order]
        return frames

    def _tokens(self, frames: int) -> int:
        return num_visual_tokens(self.video_pooling, frames, self.num_image_tokens)

    @staticmethod
    def _sources(results: dict, key: str) -> list:
        sources = results.get(key)
        if sources is None:
            return []
        if isinstance(sources, (str, os.PathLike, Image.Image)) or (
                isinstance(sources, np.ndarray) and sources.ndim in (3, 4) and key == 'images'):
            return [sources]  # one visual given bare
        return list(sources)

    def transform(self, results: dict) -> dict:
        """Load every visual and record frames and token counts per visual."""
        sid = results.get('sample_id')
        images, videos = self._sources(results, 'images'), self._sources(results, 'videos')
        order = _placeholder_order(results)
        if order is None:
            order = ['image'] * len(images) + ['video'] * len(videos)
        elif (order.count('image'), order.count('video')) != (len(images), len(videos)):
            raise ValueError(f'LoadVisuals: sample {sid!r}: the conversation has '
                             f'{order.count("image")} <image> and {order.count("video")} <video> '
                             f'placeholders, but {len(images)} images and {len(videos)} videos '
                             'were given')
        if self.num_image_tokens is None and 'video' in order:
            raise ValueError(f'{type(self).__name__}: sample {sid!r} has a clip: its token count '
                             'needs num_image_tokens (the tokens of one encoded frame)')
        tmpl = results.get('filename_tmpl') or 'img_{:05}.jpg'
        index_fn = results.get('frame_index_fn')
        totals = results.get('total_frames')
        if totals is None or np.isscalar(totals):
            totals = [totals] * len(videos)
        frames: List[np.ndarray] = []
        paths, counts = [], []
        next_src = {'image': iter(images), 'video': iter(zip(videos, totals))}
        for kind in order:
            item = next(next_src[kind])
            src, total = item if kind == 'video' else (item, None)
            src, path = resolve_source(src, results)
            try:
                if kind == 'image':
                    loaded = [np.array(load_image(src), dtype=np.uint8)]
                else:
                    loaded = self._reorder(
                        load_video_frames(src, self.num_frames, total_frames=total,
                                          filename_tmpl=tmpl, jitter=self.temporal_jitter,
                                          min_decoded_fraction=self.min_decoded_fraction,
                                          frame_index_fn=index_fn),
                        sid, len(counts))
            except FileNotFoundError as e:
                raise _visual_error(FileNotFoundError(f'LoadVisuals: sample {sid!r}: {e}')) from e
            except (ValueError, TypeError) as e:
                what = path if path is not None else f'{kind} #{len(counts)}'
                raise _visual_error(type(e)(f'LoadVisuals: sample {sid!r}, {what}: {e}')) from e
            except OSError as e:
                raise _visual_error(e)
            frames += loaded
            paths += [path] * len(loaded)
            counts.append(len(loaded))
        results['images'] = frames
        results['visual_frames'] = counts
        results['visual_kinds'] = list(order)
        if self.num_image_tokens is not None:
            results['num_visual_tokens'] = [self._tokens(n) for n in counts]
        results['img_paths'] = paths
        results['ori_shapes'] = [f.shape[:2] for f in frames]
        results['img_shapes'] = [f.shape[:2] for f in frames]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_frames={self.num_frames}, '
                f'num_image_tokens={self.num_image_tokens}, '
                f'video_pooling={self.video_pooling!r}, frame_order={self.frame_order!r}, '
                f'temporal_jitter={self.temporal_jitter}, '
                f'min_decoded_fraction={self.min_decoded_fraction})')


@TRANSFORMS.register_module()
class LoadImages(LoadVisuals):
    """:class:`LoadVisuals` under the name of image pipelines.

    The one difference: without ``num_image_tokens`` no token count is added per image, so
    ``TokenizeConversation``'s ``num_image_tokens`` (where image-only pipelines set it) counts
    them. A clip then needs ``num_image_tokens``.
    """

    def __init__(self, num_image_tokens: Optional[int] = None, **kwargs):
        super().__init__(num_image_tokens=num_image_tokens, **kwargs)


@TRANSFORMS.register_module()
class LoadVideo(LoadVisuals):
    """:class:`LoadVisuals` under the name of video pipelines (the same transform)."""
