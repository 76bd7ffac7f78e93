"""The base of mmllava's datasets: lazy records, strict checks, counted skips, test-mode misses.

:class:`BaseLlavaDataset` is what every LLaVA dataset (instruction data, action lists,
benchmarks) shares: the problem kinds a sample can have, how a bad sample is refused, skipped
(training, ``skip_invalid=True``: counted and logged) or scored as a miss (test mode), and the
pipeline that reports where it failed.
"""
import json
import logging
import os.path as osp
from collections import Counter
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmllava.registry import TRANSFORMS
from mmllava.structures import IGNORE_INDEX

from .invalid_samples import INVALID_SAMPLE, LlavaCompose, invalid_stub, is_visual_error, one_line

# Problem kinds, shared by the datasets and tools/analysis_tools/check_dataset.py.
MISSING_IMAGE = 'missing_image'
NO_GPT_TURN = 'no_gpt_turn'
IMAGE_COUNT_MISMATCH = 'image_count_mismatch'
MALFORMED = 'malformed'
FULLY_MASKED = 'fully_masked'
TOO_LONG = 'too_long'
PIPELINE_ERROR = 'pipeline_error'
PROBLEM_NAMES = {
    MISSING_IMAGE: 'missing image', NO_GPT_TURN: 'no gpt turn',
    IMAGE_COUNT_MISMATCH: '<image> count mismatch', MALFORMED: 'malformed record',
    FULLY_MASKED: 'fully masked labels', TOO_LONG: 'over max length',
    PIPELINE_ERROR: 'pipeline error'
}


class SkippedSample(NamedTuple):
    """A sample left out: its id, the problem kind (e.g. ``'missing_image'``) and the error."""
    sample_id: Any
    reason: str
    message: str


class InvalidSampleError(ValueError):
    """A bad sample; ``reason`` is its problem kind (see :data:`PROBLEM_NAMES`).

    ``record`` is the sample's complete raw record where the problem is a missing file (so that
    test mode can keep it as a miss to score), else None.
    """

    def __init__(self, message: str, reason: str, record: Optional[dict] = None):
        super().__init__(message)
        self.reason = reason
        self.record = record


def classify_error(error: BaseException) -> str:
    """The problem kind of an error raised while preparing a sample."""
    if isinstance(error, InvalidSampleError):
        return error.reason
    if isinstance(error, FileNotFoundError):
        return MISSING_IMAGE
    text = str(error)
    # tokenize_conversation's messages: no loss left, or none to begin with.
    if any(s in text for s in ('no trainable label', 'nothing to train',
                               'assistant message is empty', 'fully masked')):
        return FULLY_MASKED
    if 'over max_length' in text:
        return TOO_LONG
    if 'placeholders' in text:
        return IMAGE_COUNT_MISMATCH
    return PIPELINE_ERROR


def labels_fully_masked(results: Any) -> bool:
    """Whether a pipeline output has labels and every one is ``IGNORE_INDEX``."""
    if not isinstance(results, dict):
        return False
    inputs = results.get('inputs')
    labels = inputs.get('labels') if isinstance(inputs, dict) else results.get('labels')
    if labels is None:
        return False
    labels = torch.as_tensor(labels)
    return bool((labels == IGNORE_INDEX).all())


def summarize_skipped(skipped: Sequence[SkippedSample]) -> str:
    """``'N samples skipped: K missing image, ...'``."""
    counts = Counter(s.reason for s in skipped)
    parts = ', '.join(f'{n} {PROBLEM_NAMES.get(k, k)}' for k, n in counts.most_common())
    return f'{len(skipped)} samples skipped: {parts}'


class BaseLlavaDataset(BaseDataset):
    """Shared machinery of mmllava's datasets: lazy records, validation, counted skips.

    Subclasses implement :meth:`load_records`, which yields ``(sample_id, record)`` for each
    valid raw record (a small dict with an ``id`` and a ``modality_length`` int) and
    ``(sample_id, InvalidSampleError)`` for each invalid one (made by :meth:`_invalid`), and
    :meth:`parse_record`, which turns a raw record into the pipeline's input dict when the
    sample is asked for.

    Invalid records raise at init (the first one, with a count of all), or with
    ``skip_invalid`` are dropped, logged as ``N samples skipped: K missing image, ...`` and
    listed in :attr:`skipped` (:class:`SkippedSample` s). A sample that fails in the
    pipeline (or whose labels are fully masked) raises an :class:`InvalidSampleError`, or with
    ``skip_invalid`` (not in test mode) is logged, appended to :attr:`skipped` and replaced by
    another random sample, as mmengine does; the count is per process (each dataloader worker
    logs and counts its own).

    In test mode (evaluation) a sample whose visual is missing at init or cannot be read in the
    pipeline (a ``ValueError``/``OSError`` of ``LoadImages``/``LoadVisuals``) is a miss: it
    stays in the data list and comes out as a stub carrying metainfo ``invalid_sample`` (the
    one-line reason), which the model answers with nothing and the metrics score as wrong
    (:mod:`~mmllava.datasets.invalid_samples`). ``fail_on_invalid=True`` raises at the first one
    instead (at init, or when it is read). With ``skip_invalid`` in test mode the files missing
    at init are left out (counted in :attr:`skipped`), e.g. to score only the clips a copy has;
    those that fail when read are still misses. Other errors raise in test mode as in training.

    Args:
        ann_file (str): Annotation file, relative to ``data_root`` unless absolute.
        data_root (str): Root of ``ann_file`` and ``img_prefix``.
        img_prefix (str): Folder the image paths of the annotations are relative to
            (relative to ``data_root`` unless absolute).
        pipeline (Sequence): Transforms.
        skip_invalid (bool): Drop invalid samples (counted, logged, listed in
            :attr:`skipped`) instead of raising.
        check_images (bool): Check at init that every image file exists.
        test_mode (bool): Evaluation samples (never skipped at run time; unreadable visuals
            are scored misses, see above).
        fail_on_invalid (bool): Test mode only: raise at the first sample whose visual is
            missing or unreadable, instead of scoring it as a miss (the default).
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments (``indices``,
            ``serialize_data``, ``lazy_init``, ``max_refetch`` ...).
    """

    def __init__(self, ann_file: str = '', data_root: str = '', img_prefix: str = '',
                 pipeline: Sequence[Union[dict, Callable]] = (), skip_invalid: bool = False,
                 check_images: bool = True, test_mode: bool = False,
                 fail_on_invalid: bool = False, **kwargs):
        self.skip_invalid = skip_invalid
        self.check_images = check_images
        self.fail_on_invalid = fail_on_invalid
        self.skipped: List[SkippedSample] = []
        self._modality_lengths: Optional[np.ndarray] = None
        self._bad_indices = set()  # failed at run time: not drawn again as a replacement
        kwargs.setdefault('data_prefix', dict(img_path=img_prefix))
        # Built from our registry, so no default scope is needed (as mmpretrain's datasets).
        pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(ann_file=ann_file, data_root=data_root, pipeline=pipeline,
                         test_mode=test_mode, **kwargs)
        self.pipeline = LlavaCompose(self.pipeline.transforms)

    # ------------------------------------------------------------------ loading
    @property
    def img_prefix(self) -> str:
        """The image folder, joined with ``data_root``."""
        return self.data_prefix.get('img_path', '')

    def image_path(self, path: str) -> str:
        """An annotation's image path resolved against :attr:`img_prefix`."""
        return osp.join(self.img_prefix, path) if self.img_prefix else path

    def _read_json(self, path: str):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{type(self).__name__}: annotation file not found: '
                                    f'{path!r}')
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f'{type(self).__name__}: {path!r} is not a JSON file '
                             f'({type(e).__name__}: {e})') from None
        except RecursionError:
            raise ValueError(f'{type(self).__name__}: {path!r}: JSON nested too deeply') \
                from None

    def _invalid(self, sample_id, reason: str, message: str, path: Optional[str] = None,
                 record: Optional[dict] = None):
        where = f'sample {sample_id!r} of {self.ann_file!r}'
        if path is not None:
            where += f', image {path!r}'
        raise InvalidSampleError(f'{type(self).__name__}: {where}: {message}', reason, record)

    @property
    def scores_misses(self) -> bool:
        """Whether unreadable visuals become misses: test mode without ``fail_on_invalid``."""
        return self.test_mode and not self.fail_on_invalid

    @property
    def keeps_missing(self) -> bool:
        """Whether files missing at init become misses (then the record goes with the error)."""
        return self.scores_misses and not self.skip_invalid

    def load_records(self) -> Iterator[Tuple[Any, Union[dict, InvalidSampleError]]]:
        """Yield ``(sample_id, record or InvalidSampleError)`` pairs; see the class doc."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        """Check every record; keep the valid ones raw (plus ``modality_length``)."""
        records, problems, misses = [], [], []
        for sample_id, record in self.load_records():
            if isinstance(record, InvalidSampleError):
                if (self.keeps_missing and record.reason == MISSING_IMAGE
                        and record.record is not None):
                    misses.append(one_line(record))
                    records.append(dict(record.record, **{INVALID_SAMPLE: misses[-1]}))
                else:
                    problems.append(SkippedSample(sample_id, record.reason, str(record)))
            else:
                records.append(record)
        if problems and not self.skip_invalid:
            more = ''
            if len(problems) > 1:
                more = (f' ({summarize_skipped(problems).replace("skipped", "invalid")} in '
                        'all)')
            hint = ('Set skip_invalid=True to skip such samples, or run '
                    'tools/analysis_tools/check_dataset.py for a report')
            if self.test_mode and problems[0].reason == MISSING_IMAGE:
                hint = ('Set fail_on_invalid=False to score such samples as misses, or '
                        'skip_invalid=True to leave them out')
            raise InvalidSampleError(f'{problems[0].message}{more}. {hint}', problems[0].reason)
        if misses:
            print_log(f'{type(self).__name__} ({self.ann_file}): {len(misses)} samples have a '
                      f'missing file and are scored as misses (fail_on_invalid=True stops '
                      f'instead; first: {misses[0]})', logger='current', level=logging.WARNING)
        if problems:
            self.skipped.extend(problems)
            print_log(f'{type(self).__name__} ({self.ann_file}): '
                      f'{summarize_skipped(problems)} (first: {problems[0].message})',
                      logger='current', level=logging.WARNING)
        if not records:
            why = (f'every sample was invalid ({summarize_skipped(problems)}; first: '
                   f'{problems[0].message})' if problems else 'it holds no samples')
            raise ValueError(f'{type(self).__name__}: nothing to load from {self.ann_file!r}: '
                             f'{why}')
        return records

    def _serialize_data(self):
        # Keep the sampler's lengths as one small array before the records become bytes.
        self._modality_lengths = self._lengths_of(self.data_list)
        return super()._serialize_data()

    @staticmethod
    def _lengths_of(records) -> np.ndarray:
        return np.asarray([r['modality_length'] for r in records], dtype=np.int64)

    @property
    def modality_lengths(self) -> List[int]:
        """Per sample length estimate (words): positive with images, negative text-only.

        As the original's ``LazySupervisedDataset.modality_lengths``; never 0.
        """
        self.full_init()
        if self._modality_lengths is None or len(self._modality_lengths) != len(self):
            if not self.serialize_data:
                self._modality_lengths = self._lengths_of(self.data_list)
            else:  # a subset taken after init
                self._modality_lengths = self._lengths_of(
                    BaseDataset.get_data_info(self, i) for i in range(len(self)))
        return self._modality_lengths.tolist()

    # ------------------------------------------------------------------ samples
    def parse_record(self, record: dict) -> dict:
        """A raw record to the pipeline's input dict."""
        raise NotImplementedError

    def get_data_info(self, idx: int) -> dict:
        """The ``idx``-th sample, parsed from its raw record."""
        record = super().get_data_info(idx)
        info = self.parse_record(record)
        info['sample_idx'] = record['sample_idx']
        info['modality_length'] = record['modality_length']
        if record.get(INVALID_SAMPLE):
            info[INVALID_SAMPLE] = record[INVALID_SAMPLE]
        return info

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline; with ``skip_invalid``, a failing sample is counted and skipped.

        In test mode a sample whose visual is missing or unreadable gives its stub (see the
        class doc) unless ``fail_on_invalid``.
        """
        info = self.get_data_info(idx)
        if info.get(INVALID_SAMPLE):  # missing at init (only kept when scored as a miss)
            return self._stub(info, info[INVALID_SAMPLE])
        try:
            results = self.pipeline(info)
            if not self.test_mode and labels_fully_masked(results):
                raise InvalidSampleError(
                    f'{type(self).__name__}: sample {info.get("sample_id")!r}: labels are '
                    'fully masked (nothing to train on)', FULLY_MASKED)
        except (ValueError, OSError) as e:
            reason = classify_error(e)
            message = str(e)
            if self.ann_file and self.ann_file not in message:
                message = f'{message} (annotation file {self.ann_file!r})'
            if self.scores_misses and is_visual_error(e):
                return self._stub(self.get_data_info(idx), message, e)
            if not self.skip_invalid or self.test_mode:
                raise InvalidSampleError(message, reason) from e
            self.skipped.append(SkippedSample(info.get('sample_id'), reason, message))
            self._bad_indices.add(idx)
            # Counted in this process (a dataloader worker has its own count): logged each time.
            print_log(f'Skipping a sample ({len(self.skipped)} skipped so far): {message}',
                      logger='current', level=logging.WARNING)
            return None  # BaseDataset.__getitem__ then takes another random index
        return results

    def _stub(self, info: dict, reason: str, error: Optional[BaseException] = None) -> dict:
        stub = invalid_stub(self.pipeline, info, reason)
        if stub is None:
            raise InvalidSampleError(f'{reason} (not scored as a miss: the pipeline has no '
                                     'PackLlavaInputs to pack it)', MISSING_IMAGE) from error
        return stub

    def _rand_another(self) -> int:
        # mmengine's random replacement, avoiding the samples known to fail.
        if len(self._bad_indices) >= len(self):
            raise RuntimeError(f'{type(self).__name__}: every sample failed in the pipeline '
                               f'({summarize_skipped(self.skipped)})')
        while True:
            idx = super()._rand_another()
            if idx not in self._bad_indices:
                return idx
