"""MVBench (Li et al., CVPR 2024): 20 temporal video tasks, read as the authors release them.

The release (``OpenGVLab/MVBench``) is a root folder with ``json/<task>.json`` (a list of
``{"video", "question", "candidates", "answer"}`` records, plus ``"start"``/``"end"`` seconds
for the tasks with time bounds) and ``video/<prefix>/<video>`` files. The task table
(:data:`MVBENCH_TASKS`: json file, video folder, data type, bounds), the frame sampling
(:func:`mvbench_frame_indices`) and the prompt are those of the authors' evaluation,
``video_chat2/mvbench.ipynb`` of OpenGVLab/Ask-Anything (its ``data_list``, ``get_index``,
``read_video``/``read_gif``/``read_frame``, ``qa_template`` and ``infer_mvbench`` call).

The prompt (the notebook's printed example)::

    system:    Carefully watch the video and pay attention to the cause and sequence of
               events, ... select the best option that accurately addresses the question.\\n
    user:      <video>
               Question: {question}
               Options:
               (A) {candidate 0}
               (B) {candidate 1}
               Only give the best option.
    assistant: Best option:(          <- the answer prefix; generation continues after it

The system text goes through the template's system slot and, as the notebook runs it
(``system_llm=True``), also starts the question turn (``repeat_system=False`` leaves it
out). The notebook writes the prefix ``"Best option:("`` (no space before the
parenthesis) right after the assistant's role tag.

Samples hold ``question_id`` (``"{task}/{index in its json}"``), ``videos``, ``messages``,
``answer_prefix``, ``gt_answer`` (the notebook's answer text ``"(B) {answer}"``),
``category`` (the task, a json file stem), ``choices`` (the candidates),
``frame_index_fn`` (the reference's frame choice for this record, read by ``LoadVisuals``),
``filename_tmpl`` (frame folders: ``'{:05d}.jpg'``) and, with ``rank_options``,
``answer_candidates``: ``"A) {candidate}"`` ... , the continuation after the prefix of each
option as the notebook writes its answers (``"(A) {answer}"``), so that likelihood ranking
scores the option letter and text the model would have to generate.
"""
import functools
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from mmllava.registry import DATASETS

from .annotations import AnnotationError, read_json_or_lines
from .base import MISSING_IMAGE, BaseLlavaDataset, InvalidSampleError

MVBENCH_SYSTEM = ('Carefully watch the video and pay attention to the cause and sequence of '
                  'events, the detail and movement of objects, and the action and pose of '
                  'persons. Based on your observations, select the best option that '
                  'accurately addresses the question.\n')
MVBENCH_QUESTION_PROMPT = '\nOnly give the best option.'
MVBENCH_ANSWER_PREFIX = 'Best option:('
# The rates the notebook assumes where a file has none: read_gif(fps=25), read_frame(fps=3).
GIF_FPS = 25.0
FRAME_FPS = 3.0
FRAME_TMPL = '{:05d}.jpg'  # read_frame: f"{frame_index:05d}.jpg", numbered from 1


class MVBenchTask(NamedTuple):
    """One row of the notebook's ``data_list``: its display name, video folder (under the
    release's ``video/``), data type (``'video'``, ``'gif'`` or ``'frame'``) and whether its
    records have ``start``/``end`` bounds."""
    name: str
    prefix: str
    data_type: str
    bound: bool


# json file stem -> task, in the notebook's order (the keys are the metric's task keys).
MVBENCH_TASKS: Dict[str, MVBenchTask] = {
    'action_sequence': MVBenchTask('Action Sequence', 'star/Charades_v1_480', 'video', True),
    'action_prediction': MVBenchTask('Action Prediction', 'star/Charades_v1_480', 'video',
                                     True),
    'action_antonym': MVBenchTask('Action Antonym', 'ssv2_video', 'video', False),
    'fine_grained_action': MVBenchTask('Fine-grained Action', 'Moments_in_Time_Raw/videos',
                                       'video', False),
    'unexpected_action': MVBenchTask('Unexpected Action', 'FunQA_test/test', 'video', False),
    'object_existence': MVBenchTask('Object Existence', 'clevrer/video_validation', 'video',
                                    False),
    'object_interaction': MVBenchTask('Object Interaction', 'star/Charades_v1_480', 'video',
                                      True),
    'object_shuffle': MVBenchTask('Object Shuffle', 'perception/videos', 'video', False),
    'moving_direction': MVBenchTask('Moving Direction', 'clevrer/video_validation', 'video',
                                    False),
    'action_localization': MVBenchTask('Action Localization', 'sta/sta_video', 'video', True),
    'scene_transition': MVBenchTask('Scene Transition', 'scene_qa/video', 'video', False),
    'action_count': MVBenchTask('Action Count', 'perception/videos', 'video', False),
    'moving_count': MVBenchTask('Moving Count', 'clevrer/video_validation', 'video', False),
    'moving_attribute': MVBenchTask('Moving Attribute', 'clevrer/video_validation', 'video',
                                    False),
    'state_change': MVBenchTask('State Change', 'perception/videos', 'video', False),
    'fine_grained_pose': MVBenchTask('Fine-grained Pose', 'nturgbd', 'video', False),
    'character_order': MVBenchTask('Character Order', 'perception/videos', 'video', False),
    'egocentric_navigation': MVBenchTask('Egocentric Navigation', 'vlnqa', 'video', False),
    'episodic_reasoning': MVBenchTask('Episodic Reasoning', 'tvqa/frames_fps3_hq', 'frame',
                                      True),
    'counterfactual_inference': MVBenchTask('Counterfactual Inference',
                                            'clevrer/video_validation', 'video', False),
}
OPTION_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'


def mvbench_frame_indices(total: int, fps: Optional[float], num_segments: int,
                          bound: Optional[Sequence[float]] = None, data_type: str = 'video'
                          ) -> List[int]:
    """The notebook's ``get_index`` as 0-based indices into the clip's frames.

    ``start = max(first, round(t0 * fps))``, ``end = min(round(t1 * fps), max_frame)``
    (without bounds ``t0, t1 = -100000, 100000``), ``seg = (end - start) / N`` and frame
    ``i`` is ``int(start + seg / 2 + np.round(seg * i))``: the middle of each of N segments.
    Videos: ``first = 0``, ``max_frame = total - 1``, the stream's fps; GIFs the same at 25
    fps; frame folders ``first = 1``, ``max_frame = total`` (the file count) at 3 fps, the
    indices being file numbers (``00001.jpg`` is 1), returned here minus 1.

    Args:
        total (int): Frames of the clip (a folder: its frame files).
        fps (float, optional): The video stream's rate (videos only).
        num_segments (int): N, the frames to sample.
        bound (Sequence[float], optional): ``(start, end)`` in seconds.
        data_type (str): ``'video'``, ``'gif'`` or ``'frame'``.
    """
    if data_type == 'video':
        if not fps:
            raise ValueError('the video states no frame rate: MVBench samples by seconds')
        first, max_frame = 0, total - 1
    elif data_type == 'gif':
        fps, first, max_frame = GIF_FPS, 0, total - 1
    elif data_type == 'frame':
        fps, first, max_frame = FRAME_FPS, 1, total
    else:
        raise ValueError(f'unknown MVBench data type {data_type!r}')
    start, end = bound if bound else (-100000, 100000)
    start_idx = max(first, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    indices = [int(start_idx + seg_size / 2 + np.round(seg_size * i))
               for i in range(num_segments)]
    return [i - first for i in indices]


def _bad(path: str, n: int, what: str):
    raise AnnotationError(f'{path}: record #{n}: {what}')


def read_mvbench_task(path: str, task: str) -> List[dict]:
    """The checked records of one task file: ``{"id", "video", "question", "candidates",
    "answer", "gt" ("(B) answer"), "bound"}`` (``bound``: ``(start, end)`` or None)."""
    data = read_json_or_lines(path)
    if not isinstance(data, list):
        raise AnnotationError(f'{path}: an MVBench task file is a JSON list of records')
    spec = MVBENCH_TASKS[task]
    out = []
    for n, rec in enumerate(data):
        if not isinstance(rec, dict):
            _bad(path, n, f'expected a dict, got {rec!r:.80}')
        if not isinstance(rec.get('video'), str) or not isinstance(rec.get('question'), str):
            _bad(path, n, f'needs "video" and "question" strings: {rec!r:.120}')
        cands = rec.get('candidates')
        if (not isinstance(cands, list) or not 2 <= len(cands) <= len(OPTION_LETTERS)
                or not all(isinstance(c, (str, int, float)) and not isinstance(c, bool)
                           for c in cands)):
            _bad(path, n, f'"candidates" must be a list of 2 to 26 strings or numbers, got '
                          f'{cands!r:.80}')
        # The notebook formats them into text: a numeric option (counting) is its text.
        cands = [str(c) for c in cands]
        if isinstance(rec.get('answer'), (int, float)) and not isinstance(rec['answer'], bool):
            rec = dict(rec, answer=str(rec['answer']))
        if rec.get('answer') not in cands:
            _bad(path, n, f'"answer" {rec.get("answer")!r:.60} is not one of the candidates')
        bound = None
        if spec.bound:
            bound = (rec.get('start'), rec.get('end'))
            if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in bound):
                _bad(path, n, f'task {task!r} has time bounds: "start" and "end" must be '
                              f'seconds, got {bound!r}')
        # qa_template: the last candidate equal to the answer gives the letter.
        letter = OPTION_LETTERS[max(i for i, c in enumerate(cands) if c == rec['answer'])]
        out.append(dict(id=f'{task}/{n}', video=rec['video'], question=rec['question'],
                        candidates=list(cands), answer=rec['answer'],
                        gt=f'({letter}) {rec["answer"]}', bound=bound))
    return out


def mvbench_json_dir(path: str) -> str:
    """The folder of the task files: ``path`` itself, or its ``json/`` (the release root)."""
    if osp.isdir(osp.join(path, 'json')):
        return osp.join(path, 'json')
    return path


def read_mvbench(paths: Sequence[str], tasks: Optional[Sequence[str]] = None
                 ) -> Dict[str, dict]:
    """``{question_id: {"gt", "task", "choices"}}`` of the task files found in ``paths``
    (task files ``<task>.json``, their folder, or the release root), for offline scoring.

    Without ``tasks`` every known task file present is read (at least one must be).
    """
    files = {}
    for path in paths:
        if osp.isdir(path):
            folder = mvbench_json_dir(path)
            for task in MVBENCH_TASKS:
                if osp.isfile(osp.join(folder, f'{task}.json')):
                    files[task] = osp.join(folder, f'{task}.json')
        else:
            task = osp.splitext(osp.basename(path))[0]
            if task not in MVBENCH_TASKS:
                raise AnnotationError(f'{path}: not an MVBench task file (<task>.json, one of '
                                      f'{", ".join(MVBENCH_TASKS)})')
            files[task] = path
    if tasks is not None:
        missing = [t for t in tasks if t not in files]
        if missing:
            raise AnnotationError(f'{", ".join(paths)}: no task file for {missing}')
        files = {t: files[t] for t in tasks}
    if not files:
        raise AnnotationError(f'{", ".join(paths)}: no MVBench task file (json/<task>.json, '
                              f'task one of {", ".join(MVBENCH_TASKS)})')
    if tasks is None and len(files) < len(MVBENCH_TASKS):
        from mmengine.logging import MMLogger
        absent = ', '.join(t for t in MVBENCH_TASKS if t not in files)
        MMLogger.get_current_instance().warning(
            f'MVBench: {len(files)} of its {len(MVBENCH_TASKS)} task files found in '
            f'{", ".join(paths)} (missing: {absent}): the mean is over those tasks, not '
            'comparable with full-benchmark numbers')
    anns = {}
    for task, path in files.items():
        for rec in read_mvbench_task(path, task):
            anns[rec['id']] = dict(gt=rec['gt'], task=task, choices=rec['candidates'])
    return anns


@DATASETS.register_module()
class MVBenchDataset(BaseLlavaDataset):
    """MVBench from the release folder (see the module doc for the files, prompt, samples).

    Every task's json file and video folder must exist (a missing one raises, naming the
    task: pass ``tasks`` to evaluate a subset). A missing video is scored as a miss (or
    raises with ``fail_on_invalid``), as in the other benchmarks. The number of frames is
    ``LoadVisuals``'s ``num_frames`` (16 in the configs, the notebook's ``num_frame``).

    Args:
        data_root (str): The release root (``json/`` and ``video/``).
        json_dir (str): The task files' folder, relative to ``data_root``.
        video_dir (str): The video folders' root, relative to ``data_root``.
        tasks (Sequence[str], optional): Task keys (json stems) to read; all 20 by default.
        system_prompt (str): The system text (the notebook's ``system``).
        question_prompt (str): Text after the options (its ``question_prompt``).
        answer_prefix (str): Start of the answer (its ``answer_prompt``).
        repeat_system (bool): Also start the question turn with the system text, as the
            notebook does (``system_llm=True``; the default).
        rank_options (bool): Give ``answer_candidates`` for likelihood ranking.
        **kwargs: Other :class:`~mmllava.datasets.base.BaseLlavaDataset` arguments.
    """

    def __init__(self, data_root: str = '', json_dir: str = 'json', video_dir: str = 'video',
                 tasks: Optional[Sequence[str]] = None, system_prompt: str = MVBENCH_SYSTEM,
                 question_prompt: str = MVBENCH_QUESTION_PROMPT,
                 answer_prefix: str = MVBENCH_ANSWER_PREFIX, repeat_system: bool = True,
                 rank_options: bool = False, test_mode: bool = True, **kwargs):
        if not test_mode:
            raise ValueError('MVBenchDataset is an evaluation dataset: test_mode must be True')
        unknown = [t for t in (tasks or ()) if t not in MVBENCH_TASKS]
        if unknown:
            raise ValueError(f'MVBenchDataset: unknown tasks {unknown}; the tasks are '
                             f'{", ".join(MVBENCH_TASKS)}')
        self.tasks = list(tasks) if tasks is not None else list(MVBENCH_TASKS)
        if not self.tasks:
            raise ValueError('MVBenchDataset: tasks is empty')
        self.json_dir = json_dir
        self.video_dir = video_dir
        self.system_prompt = system_prompt
        self.question_prompt = question_prompt
        self.answer_prefix = answer_prefix
        self.repeat_system = repeat_system
        self.rank_options = rank_options
        super().__init__(ann_file=json_dir, data_root=data_root, test_mode=True, **kwargs)

    def _root(self, path: str) -> str:
        return path if osp.isabs(path) or not self.data_root else osp.join(self.data_root, path)

    def question_text(self, rec: dict) -> str:
        """The notebook's ``qa_template`` question (and ``question_prompt``)."""
        lines = [f'Question: {rec["question"]}', 'Options:']
        lines += [f'({OPTION_LETTERS[i]}) {c}' for i, c in enumerate(rec['candidates'])]
        return '\n'.join(lines) + self.question_prompt

    def load_records(self):
        """Each task's records, their videos checked (``check_images``)."""
        json_dir, video_root = self._root(self.json_dir), self._root(self.video_dir)
        absent = []
        for task in self.tasks:
            path = osp.join(json_dir, f'{task}.json')
            folder = osp.join(video_root, MVBENCH_TASKS[task].prefix)
            absent += [f'task {task!r}: {what} {where!r}' for what, where, ok in (
                ('task file', path, osp.isfile), ('video folder', folder, osp.isdir))
                if not ok(where)]
        if absent:
            raise FileNotFoundError(
                f'MVBenchDataset: not found: {"; ".join(absent)}. Give tasks=[...] to '
                'evaluate the tasks you have')
        for task in self.tasks:
            path = osp.join(json_dir, f'{task}.json')
            folder = osp.join(video_root, MVBENCH_TASKS[task].prefix)
            for rec in read_mvbench_task(path, task):
                record = dict(rec, task=task, path=osp.join(folder, rec['video']),
                              modality_length=len(self.question_text(rec).split()))
                if self.check_images and not osp.exists(record['path']):
                    try:  # the record goes with the error: test mode scores it as a miss
                        self._invalid(record['id'], MISSING_IMAGE, 'video not found',
                                      record['path'], record=record)
                    except InvalidSampleError as e:
                        yield record['id'], e
                        continue
                yield record['id'], record

    def parse_record(self, record: dict) -> dict:
        """The test sample of a record (see the module doc)."""
        spec = MVBENCH_TASKS[record['task']]
        question = self.question_text(record)
        user = (self.system_prompt if self.repeat_system else '') + question
        messages = [dict(role='user', content=f'<video>\n{user}')]
        if self.system_prompt is not None:
            messages.insert(0, dict(role='system', content=self.system_prompt))
        bound = tuple(record['bound']) if record['bound'] is not None else None
        info = dict(
            sample_id=record['id'], question_id=record['id'], question=question,
            images=[], videos=[record['path']], messages=messages,
            answer_prefix=self.answer_prefix, gt_answer=record['gt'],
            category=record['task'], choices=list(record['candidates']),
            frame_index_fn=functools.partial(_frame_indices, bound=bound,
                                             data_type=spec.data_type))
        if spec.data_type == 'frame':
            info['filename_tmpl'] = FRAME_TMPL
        if self.rank_options:
            info['answer_candidates'] = [f'{OPTION_LETTERS[i]}) {c}'
                                         for i, c in enumerate(record['candidates'])]
        return info


def _frame_indices(total: int, fps: Optional[float], num_frames: int,
                   bound: Optional[tuple], data_type: str) -> List[int]:
    # LoadVisuals's frame_index_fn signature, for functools.partial (picklable).
    return mvbench_frame_indices(total, fps, num_frames, bound, data_type)
