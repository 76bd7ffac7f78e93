"""SEED-Bench (v1) from its release: ``SEED-Bench.json``, the CC3M images and the clips.

The file (AILab-CVC/SEED-Bench ``DATASET.md``) is ``{"question_type": {name: id},
"questions": [{"question_id", "question", "choice_a" .. "choice_d", "answer", "data_id",
"data_type", "question_type_id", ["segment"]}]}``: dimensions 1-9 ask about an image
(``data_type "image"``, ``data_id`` its file name in ``SEED-Bench-image/``), 10-12 about a clip
(Action Recognition: a Something-Something-v2 ``.webm``; Action Prediction: an EPIC-KITCHENS
video with ``segment`` [start, end] in seconds; Procedure Understanding: a Breakfast video with
``segment`` [start, end] in frames at 15 fps).

Where a video question's pixels come from (``video_source``):

- ``'llava_frames'``: LLaVA-1.5's evaluation (``playground/data/eval/seed_bench/
  extract_video_frames.py`` with ``num_segments = 1``): the middle frame of each question's
  clip, extracted beforehand to ``{video_prefix}/{question_type_id}_{question_id}.png``, asked as
  an ``<image>``. This is how LLaVA-1.5's reported numbers were made.
- ``'frames'``: the authors' released 8 frames per question (``v1_video.zip``, unpacked as
  ``{video_prefix}/task{dim}/{ssv2,kitchen,breakfast}_8_frame/{question_id}/{1..8}.png``).
- ``'videos'``: the source videos, ``{video_prefix}/{data_id}`` (``video_prefix`` may map each
  dimension to its dataset's folder), frames picked as SEED-Bench's ``eval.py`` /
  ``instruct_blip_interface.py`` pick them (:func:`seed_frame_indices`, inside ``segment``;
  the frame count and rate from the stream header, a late segment decoded from a seek). The
  ``data_id`` path is joined as the file gives it (SEED-Bench's ``eval.py``; LLaVA's extraction
  script keeps only the EPIC file name: give ``video_prefix`` accordingly).

``video_frames='clip'`` asks with a ``<video>`` of :class:`SEEDBenchLoadVisuals`'s ``num_frames``
frames; ``'middle'`` with one frame as an ``<image>`` (``get_index(n, 1)``, LLaVA's choice;
with ``'frames'`` the 4th of the 8). ``'llava_frames'`` is always one image.

Prompts. By letter (LLaVA-1.5, ``llava-seed-bench.jsonl`` as lmms-eval's ``seedbench/utils.py``
rebuilds it)::

    <image>
    {question}
    A. {choice_a}
    B. {choice_b}
    C. {choice_c}
    D. {choice_d}
    Answer with the option's letter from the given choices directly.

By likelihood (``rank_options=True``, SEED-Bench's own evaluation, ``instruct_blip_interface.py``:
the prompt is the question alone, each choice's text is scored as the answer): ``<image>\\n
{question}``, and the sample carries ``answer_candidates`` (the four choice texts) for the
model's closed-set ranking (``pred_label``). How a choice's token log-probabilities add up is
the model's ``ranking`` (``'sum'`` by default); SEED-Bench's interface ranks the choices by the
language model's loss on each choice text.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from mmllava.registry import DATASETS, TRANSFORMS
from mmllava.structures import IMAGE_PLACEHOLDER

from .annotations import AnnotationError, read_json_or_lines
from .base import MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError
from .benchmarks import MULTIPLE_CHOICE_PROMPT
from .transforms.loading import load_image, resolve_source
from .transforms.video import LoadVisuals, _visual_error

VIDEO_PLACEHOLDER = '<video>'
SEED_LETTERS = ('A', 'B', 'C', 'D')
CHOICE_KEYS = ('choice_a', 'choice_b', 'choice_c', 'choice_d')
#: SEED-Bench v1's dimensions as ``SEED-Bench.json`` names them (``question_type``).
SEED_DIMENSIONS = {
    1: 'Scene Understanding', 2: 'Instance Identity', 3: 'Instance Attributes',
    4: 'Instance Location', 5: 'Instances Counting', 6: 'Spatial Relation',
    7: 'Instance Interaction', 8: 'Visual Reasoning', 9: 'Text Understanding',
    10: 'Action Recognition', 11: 'Action Prediction', 12: 'Procedure Understanding'}
VIDEO_DIMENSIONS = (10, 11, 12)
#: The folders of the released 8-frame clips (``v1_video.zip``), per video dimension.
RELEASED_FRAME_FOLDERS = {10: 'ssv2_8_frame', 11: 'kitchen_8_frame', 12: 'breakfast_8_frame'}
VIDEO_SOURCES = ('llava_frames', 'frames', 'videos')
VIDEO_FRAMES = ('clip', 'middle')
DATA_TYPES = ('all', 'image', 'video')


def _bad(path: str, what: str):
    raise AnnotationError(f'{path}: {what}')


def read_seed_bench(path: str) -> Dict[str, dict]:
    """The questions of a ``SEED-Bench.json``, checked: ``{question_id: record}``.

    Each record is the file's, plus ``dimension`` (the name of its ``question_type_id`` in
    ``question_type``, :data:`SEED_DIMENSIONS` when the file has no such map). Shared by
    :class:`SEEDBenchDataset` and the offline scorer.

    Raises:
        AnnotationError: not a SEED-Bench file, or a question without its fields (which
            question, which field).
    """
    data = read_json_or_lines(path)
    if not isinstance(data, dict) or not isinstance(data.get('questions'), list):
        _bad(path, 'a SEED-Bench file is {"question_type": {name: id}, "questions": [...]}')
    names = data.get('question_type') or {v: k for k, v in SEED_DIMENSIONS.items()}
    if not isinstance(names, dict):
        _bad(path, '"question_type" must map dimension names to ids')
    by_id = {int(i): str(name) for name, i in names.items()}
    out = {}
    for n, q in enumerate(data['questions']):
        where = f'question #{n}'
        if not isinstance(q, dict) or 'question_id' not in q:
            _bad(path, f'{where} has no "question_id": {q!r:.120}')
        qid = str(q['question_id'])
        where = f'question {qid!r}'
        if qid in out:
            _bad(path, f'{where} appears twice')
        missing = [k for k in ('question', 'answer', 'data_id', 'data_type', 'question_type_id')
                   + CHOICE_KEYS if k not in q]
        if missing:
            _bad(path, f'{where} lacks {missing}')
        if q['answer'] not in SEED_LETTERS:
            _bad(path, f'{where}: "answer" must be one of {list(SEED_LETTERS)}, got '
                       f'{q["answer"]!r}')
        if q['data_type'] not in ('image', 'video'):
            _bad(path, f'{where}: "data_type" must be "image" or "video", got '
                       f'{q["data_type"]!r}')
        dim = q['question_type_id']
        if not isinstance(dim, int) or dim not in by_id:
            _bad(path, f'{where}: "question_type_id" {dim!r} is none of the dimensions '
                       f'{sorted(by_id)} of "question_type"')
        if not all(isinstance(q[k], str) for k in ('question', ) + CHOICE_KEYS):
            _bad(path, f'{where}: "question" and the choices must be text')
        segment = q.get('segment')
        if segment is not None and not (isinstance(segment, list) and len(segment) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in segment)):
            _bad(path, f'{where}: "segment" must be [start, end], got {segment!r:.60}')
        out[qid] = dict(q, question_id=qid, dimension=by_id[dim])
    if not out:
        _bad(path, 'the file holds no questions')
    return out


def seed_frame_indices(num_frames: int, num_segments: int) -> np.ndarray:
    """SEED-Bench's frame choice (``get_index`` of its ``eval.py`` interfaces), offsets from
    the segment's first frame: all frames when there are fewer than ``num_segments``, else
    ``int(s / 2) + round(s * i)`` with ``s = (num_frames - 1) / num_segments``."""
    if num_segments > num_frames:
        return np.arange(max(num_frames, 0))
    size = float(num_frames - 1) / num_segments
    return np.array([int(size / 2) + int(np.round(size * i)) for i in range(num_segments)])


def _video_frame_indices(total: int, fps: float, segment, count: int) -> np.ndarray:
    """The frames of a source video SEED-Bench reads (its ``instruct_blip_interface.py``):
    the whole clip (``total - 1`` frames, dimension 10), a segment in seconds (11) or in
    frames (12, integers)."""
    if segment is None:
        return seed_frame_indices(total - 1, count)
    start, end = segment
    if isinstance(start, int) and isinstance(end, int):  # frames (Breakfast)
        end = min(end, total)
        return seed_frame_indices(end - start, count) + start
    first = int(min(max(start * fps, 0), total - 1))
    last = int(min(max(end * fps, 0), total - 1))
    return seed_frame_indices(last - first, count) + first


#: A source video whose first wanted frame lies more than this many seconds in is decoded from
#: a seek to the keyframe before it (EPIC-KITCHENS segments start minutes into hour-long videos).
SEEK_AFTER_SECONDS = 2.0


def _decode_indices(path: str, wanted: Sequence[int], fps: float = 0.0) -> List[np.ndarray]:
    """The frames ``wanted`` (indices from the first frame) of a video, decoded in order (PyAV)
    up to the last one; from a seek to the keyframe before the first when it lies past
    :data:`SEEK_AFTER_SECONDS` (indices then come from the frames' timestamps, as decord's
    frame-accurate access gives them for constant-rate videos)."""
    import av
    need = sorted(set(int(i) for i in wanted))
    frames = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            base, start = stream.time_base, stream.start_time or 0
            seek = bool(fps and base and need[0] > SEEK_AFTER_SECONDS * fps)
            if seek:  # one second early: the keyframe search starts before the first frame
                target = start + int((need[0] / fps - 1.0) / float(base))
                container.seek(max(target, start), stream=stream, backward=True)
            for n, frame in enumerate(container.decode(stream)):
                if seek:
                    if frame.pts is None:
                        raise ValueError(f'video {path!r}: a frame without a timestamp '
                                         'after seeking')
                    n = int(round(float((frame.pts - start) * base) * fps))
                if n in need:
                    frames[n] = frame.to_ndarray(format='rgb24')
                if n >= need[-1]:
                    break
    except ValueError:
        raise
    except Exception as e:  # av.error.*
        raise ValueError(f'cannot decode video {path!r}: {type(e).__name__}: {e}') from e
    lost = [i for i in need if i not in frames]
    if lost:
        raise ValueError(f'video {path!r}: frame {lost[0]} does not decode (the video ends '
                         'before it, or its timestamps skip it)')
    return [frames[int(i)] for i in wanted]


def _video_header(path: str):
    """``(frames, fps)`` of a video's stream (frames counted when the header has none)."""
    import av
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            total = stream.frames
            if total <= 0:
                total = sum(1 for _ in container.decode(video=0))
    except Exception as e:  # av.error.*, no video stream
        raise ValueError(f'cannot read video {path!r}: {type(e).__name__}: {e}') from e
    if total < 1:
        raise ValueError(f'video {path!r} has no frames')
    return total, fps


@TRANSFORMS.register_module()
class SEEDBenchLoadVisuals(LoadVisuals):
    """:class:`~mmllava.datasets.transforms.LoadVisuals` that also reads SEED-Bench's video
    questions as :class:`SEEDBenchDataset` describes them (``seed_video`` of the sample).

    ``seed_video`` is ``{"frames": [paths]}`` (the released 8 frames) or ``{"path",
    "segment", "dimension"}`` (a source video) and ``"mode"``: ``'clip'`` (``num_frames``
    frames become the sample's clip: from a source video :func:`seed_frame_indices` within the
    segment; from the released frames all of them when ``num_frames`` is their number, else
    evenly spaced ones) or ``'middle'`` (``seed_frame_indices(n, 1)``, one frame as the image).
    The rest is :class:`LoadVisuals`'s (images, token counts). A missing or undecodable clip is
    a visual error, scored as a miss in test mode.
    """

    def _frames(self, spec: dict, results: dict) -> List[np.ndarray]:
        count = 1 if spec.get('mode') == 'middle' else self.num_frames
        if spec.get('frames') is not None:
            paths = list(spec['frames'])
            if count == len(paths):
                picked = paths
            elif count == 1:
                picked = [paths[int(seed_frame_indices(len(paths), 1)[0])]]
            else:
                idx = np.floor((np.arange(count) + 0.5) * len(paths) / count).astype(int)
                picked = [paths[i] for i in idx]
            return [np.array(load_image(resolve_source(p, results)[0]), dtype=np.uint8)
                    for p in picked]
        path = resolve_source(spec['path'], results)[0]
        if not osp.isfile(path):
            raise FileNotFoundError(f'video not found: {path!r}')
        total, fps = _video_header(path)
        wanted = _video_frame_indices(total, fps, spec.get('segment'), count)
        if len(wanted) == 0:
            raise ValueError(f'video {path!r}: its segment {spec.get("segment")} holds no frame')
        return _decode_indices(path, wanted, fps)

    def transform(self, results: dict) -> dict:
        """Decode the SEED-Bench clip (if any) into the sample's visuals, then load them."""
        spec = results.get('seed_video')
        if spec is not None:
            sid = results.get('sample_id')
            try:
                frames = self._frames(spec, results)
            except FileNotFoundError as e:
                raise _visual_error(FileNotFoundError(f'SEEDBenchLoadVisuals: sample {sid!r}: '
                                                      f'{e}')) from e
            except (ValueError, OSError) as e:
                raise _visual_error(ValueError(f'SEEDBenchLoadVisuals: sample {sid!r}: {e}')) \
                    from e
            results = dict(results)
            if spec.get('mode') == 'middle':
                results['images'], results['videos'] = [frames[0]], []
            else:
                results['images'], results['videos'] = [], [np.stack(frames)]
        return super().transform(results)


@DATASETS.register_module()
class SEEDBenchDataset(BaseLlavaDataset):
    """SEED-Bench v1 questions from ``SEED-Bench.json`` (see the module doc for the layouts).

    Samples hold ``question_id`` (str), ``question``, ``messages``, ``images`` (or
    ``seed_video``, read by :class:`SEEDBenchLoadVisuals`), ``gt_answer`` (the letter),
    ``choices`` (the four texts), ``category`` (the dimension's name), ``data_type``
    (``'image'``/``'video'``) and with ``rank_options`` ``answer_candidates``. A missing image,
    frame folder or video is a miss in test mode (see :class:`BaseLlavaDataset`).

    Args:
        ann_file (str): ``SEED-Bench.json``, relative to ``data_root`` unless absolute.
        data_root (str): Root of the files and prefixes.
        img_prefix (str): The image folder (``SEED-Bench-image``).
        video_prefix (str | dict): Where video questions' files are (see ``video_source``):
            a folder, or ``{dimension id: folder}`` for source videos from three datasets.
        video_source (str): ``'llava_frames'``, ``'frames'`` or ``'videos'`` (module doc).
        video_frames (str): ``'clip'`` (a ``<video>``) or ``'middle'`` (one frame as an
            ``<image>``); ``'llava_frames'`` is always ``'middle'``.
        data_type (str): ``'all'``, ``'image'`` (dimensions 1-9) or ``'video'`` (10-12).
        dims (Sequence[int | str], optional): Keep these dimensions (ids or names).
        rank_options (bool): Rank the choice texts by likelihood (SEED-Bench's evaluation).
        list_options (bool, optional): List ``A. ...`` options and the instruction in the
            prompt; by default when not ranking.
        prompt_suffix (str): The instruction after the options.
        **kwargs: Other :class:`BaseLlavaDataset` arguments.
    """

    def __init__(self, ann_file: str, data_root: str = '', img_prefix: str = 'SEED-Bench-image',
                 video_prefix: Union[str, Dict[int, str]] = 'SEED-Bench-video-image',
                 video_source: str = 'llava_frames', video_frames: str = 'clip',
                 data_type: str = 'all', dims: Optional[Sequence[Union[int, str]]] = None,
                 rank_options: bool = False, list_options: Optional[bool] = None,
                 prompt_suffix: str = MULTIPLE_CHOICE_PROMPT, test_mode: bool = True,
                 **kwargs):
        for name, value, allowed in (('video_source', video_source, VIDEO_SOURCES),
                                     ('video_frames', video_frames, VIDEO_FRAMES),
                                     ('data_type', data_type, DATA_TYPES)):
            if value not in allowed:
                raise ValueError(f'SEEDBenchDataset: {name} must be one of {allowed}, got '
                                 f'{value!r}')
        if not test_mode:
            raise ValueError('SEEDBenchDataset is an evaluation dataset: test_mode must be True')
        self.video_source, self.video_frames, self.data_type = video_source, video_frames, \
            data_type
        self.dims = None if dims is None else list(dims)
        self.rank_options = rank_options
        self.list_options = (not rank_options) if list_options is None else list_options
        self.prompt_suffix = prompt_suffix
        self._video_prefix = video_prefix
        super().__init__(ann_file=ann_file, data_root=data_root, img_prefix=img_prefix,
                         test_mode=True, **kwargs)

    def _video_folder(self, dim: int) -> str:
        prefix = self._video_prefix
        if isinstance(prefix, dict):
            prefix = prefix.get(dim, prefix.get(str(dim)))
            if prefix is None:
                raise ValueError(f'SEEDBenchDataset: video_prefix names no folder for '
                                 f'dimension {dim}')
        if self.data_root and not osp.isabs(prefix):
            prefix = osp.join(self.data_root, prefix)
        return prefix

    def _keep(self, q: dict) -> bool:
        if self.data_type != 'all' and q['data_type'] != self.data_type:
            return False
        return self.dims is None or q['question_type_id'] in self.dims \
            or q['dimension'] in self.dims

    def prompt(self, q: dict) -> str:
        """The question (with ``A. ...`` options and the instruction when listed)."""
        lines = [q['question']]
        if self.list_options:
            lines += [f'{letter}. {q[key]}' for letter, key in zip(SEED_LETTERS, CHOICE_KEYS)]
            if self.prompt_suffix:
                lines.append(self.prompt_suffix)
        return '\n'.join(lines)

    def _visual(self, q: dict):
        """``(placeholder, images, seed_video, paths to check)`` of a question."""
        if q['data_type'] == 'image':
            path = self.image_path(q['data_id'])
            return IMAGE_PLACEHOLDER, [path], None, [path]
        dim, qid = q['question_type_id'], q['question_id']
        folder = self._video_folder(dim)
        if self.video_source == 'llava_frames':
            path = osp.join(folder, f'{dim}_{qid}.png')
            return IMAGE_PLACEHOLDER, [path], None, [path]
        if self.video_source == 'frames':
            sub = osp.join(folder, f'task{dim}', RELEASED_FRAME_FOLDERS.get(dim, ''), qid)
            spec = dict(frames=[osp.join(sub, f'{i}.png') for i in range(1, 9)])
            check = spec['frames']
        else:
            spec = dict(path=osp.join(folder, q['data_id']), segment=q.get('segment'),
                        dimension=dim)
            check = [spec['path']]
        spec['mode'] = self.video_frames
        holder = IMAGE_PLACEHOLDER if self.video_frames == 'middle' else VIDEO_PLACEHOLDER
        return holder, [], spec, check

    def load_records(self):
        """Each kept question, its files checked (``check_images``)."""
        questions = read_seed_bench(self.ann_file)
        if self.dims is not None:
            known = set(SEED_DIMENSIONS) | {q['question_type_id'] for q in questions.values()} \
                | {q['dimension'] for q in questions.values()}
            unknown = [d for d in self.dims if d not in known]
            if unknown:
                raise ValueError(f'SEEDBenchDataset: dims {unknown} are not dimensions of '
                                 f'{self.ann_file} (ids or names as in "question_type")')
        for qid, q in questions.items():
            if not self._keep(q):
                continue
            holder, images, spec, check = self._visual(q)
            prompt = self.prompt(q)
            record = dict(id=qid, question_id=qid, question=q['question'],
                          text=f'{holder}\n{prompt}', images=images, seed_video=spec,
                          gt_answer=q['answer'], choices=[q[k] for k in CHOICE_KEYS],
                          category=q['dimension'], data_type=q['data_type'],
                          modality_length=max(1, len(prompt.split())))
            lost = next((p for p in check if not osp.exists(p)), None) \
                if self.check_images else None
            if lost is not None:
                try:  # the record goes with the error: test mode scores it as a miss
                    self._invalid(qid, MISSING_IMAGE, 'file not found', lost, record=record)
                except InvalidSampleError as e:
                    yield qid, e
                    continue
            yield qid, record

    def parse_record(self, record: dict) -> dict:
        """The test sample of a question."""
        info = dict(sample_id=record['id'], question_id=record['question_id'],
                    question=record['question'], images=list(record['images']), videos=[],
                    messages=[dict(role='user', content=record['text'])],
                    gt_answer=record['gt_answer'], choices=list(record['choices']),
                    category=record['category'], data_type=record['data_type'])
        if record.get('seed_video') is not None:
            info['seed_video'] = dict(record['seed_video'])
        if self.rank_options:
            info['answer_candidates'] = list(record['choices'])
        return info
