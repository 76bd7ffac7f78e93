"""Closed-set action recognition scored from a generative model's outputs."""
import re
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from mmllava.datasets.label_map import read_label_map
from mmllava.registry import METRICS

from .base import (
    ID_KEYS,
    INVALID_KEY,
    PRED_KEYS,
    GenerationMetric,
    MetricInputError,
    first_key,
    is_invalid,
    percent,
)


def normalize_action(text: str) -> str:
    """Lower case, inner whitespace collapsed, surrounding spaces and final periods dropped."""
    return re.sub(r'\s+', ' ', (text or '').strip().lower()).rstrip('.').strip()


def answer_label(text: Optional[str], scores: Optional[Sequence[float]],
                 index: Dict[str, int]) -> int:
    """The class a closed-set model answers with: the one its generated text names, or else
    the first of its likelihood ranking (-1: neither, e.g. an unreadable clip).

    Generated text and ranking can differ (greedy decoding is not the most likely whole
    answer); where the text names a class, that is what the model said, so the answer
    (``pred_class`` of :func:`mmllava.apis.inference_model`, ``answer_acc`` here) agrees
    with it; the ranking decides where the text names none.

    Args:
        text (str, optional): The generated answer.
        scores (Sequence[float], optional): One score per class (``pred_scores``).
        index (dict): :func:`normalize_action` of each class name -> its index.
    """
    named = index.get(normalize_action(text), -1) if text else -1
    if named >= 0 or scores is None or len(scores) == 0:
        return named
    return int(np.argmax(np.asarray(scores)))


def _to_list(value) -> Optional[list]:
    if value is None:
        return None
    return value.tolist() if hasattr(value, 'tolist') else list(value)


@METRICS.register_module()
class ActionAccuracy(GenerationMetric):
    """Top-k, mean-class accuracy and exact match of a closed-set action model.

    Records: ``pred`` (the generated answer), ``gt`` (the class index, ``gt_label``; a class
    name is accepted too) and, for models that rank the class names by likelihood,
    ``scores`` (one score per class, ``pred_scores``).

    Keys (percent): with scores, ``{prefix}/top1``, ``top5`` and ``mean_class_acc`` come from
    the ranking; without, ``top1`` and ``mean_class_acc`` come from the generated text (no
    ``top5``). Always ``exact_match`` (generated text equals the true class name, after
    :func:`normalize_action`), ``invalid_rate`` (text that names no class) and ``answer_acc``
    (the answer a user reads, ``pred_class``: the class the text names, else the ranking's
    first; :func:`answer_label`), plus
    ``num_samples``, ``num_empty``, ``num_invalid``. With ``pairs``, ``pair_acc/{a}|{b}``: the
    top-1 accuracy over the samples of classes a and b (e.g. a time-reversed pair); with
    ``per_class``, ``class_acc/{name}``.

    An invalid sample (a clip that could not be read, ``invalid`` in its record) is a miss
    everywhere: outside every top-k, wrong in ``mean_class_acc``, ``exact_match`` and the
    confusion matrix (its "(invalid)" column), and counted in ``invalid_rate`` (it names no
    class). It has no scores; every other sample must have them, or none does.

    Args:
        classes (Sequence[str] | str, optional): Class names, or a label map file (one name a
            line, as words: :func:`mmllava.datasets.label_map.read_label_map`). By default the
            evaluated dataset's ``classes`` (its ``metainfo``, which mmengine's loops give the
            metric as ``dataset_meta``), so a config states its label map once.
        topk (Sequence[int]): The k of top-k with scores. Defaults to (1, 5).
        pairs (Sequence[Sequence[str]]): Class pairs whose joint accuracy is reported.
        per_class (bool): Report each class's accuracy.
        confusion_matrix (str, optional): Write the confusion matrix (rows: true class,
            columns: predicted, each row normalized; from the ranking when there are scores)
            as a picture to this path. ``tools/test.py`` sets it to
            ``WORK_DIR/confusion_matrix.png`` when a config leaves it out.
        **kwargs: :class:`GenerationMetric` arguments.
    """
    default_prefix = 'action'
    gt_key = 'gt_label'

    def __init__(self, classes: Union[None, Sequence[str], str] = None,
                 topk: Sequence[int] = (1, 5), pairs: Sequence[Sequence[str]] = (),
                 per_class: bool = False, confusion_matrix: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.per_class = per_class
        self.confusion_matrix = confusion_matrix
        self.topk = tuple(topk)
        self._pairs = [tuple(pair) for pair in pairs]
        self.classes = None
        if classes is not None:
            self._set_classes(read_label_map(classes) if isinstance(classes, str)
                              else list(classes))

    @property
    def dataset_meta(self) -> Optional[dict]:
        """The evaluated dataset's metainfo; its ``classes`` are used unless given."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        self._dataset_meta = meta
        if self.classes is None and meta and meta.get('classes') is not None:
            self._set_classes([str(name) for name in meta['classes']])

    def _set_classes(self, classes: List[str]) -> None:
        """Take the class names; check they differ and that ``pairs`` names two of them."""
        self.classes = classes
        index = {}
        for i, name in enumerate(self.classes):
            key = normalize_action(name)
            if key in index:
                raise ValueError(f'Class names {self.classes[index[key]]!r} and {name!r} are '
                                 'the same after normalization')
            index[key] = i
        self.index = index
        self.pairs = []
        for pair in self._pairs:
            if len(pair) != 2 or any(normalize_action(n) not in index for n in pair):
                raise ValueError(f'pairs: {pair!r} is not two of the classes {self.classes}')
            self.pairs.append(tuple(pair))

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Records from data samples: the answer, the true label and the class scores."""
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            gt = sample.get('gt_label')
            gt = _to_list(gt) if gt is not None and not isinstance(gt, (int, str)) else gt
            self.results.append(dict(id=first_key(sample, ID_KEYS),
                                     pred=first_key(sample, PRED_KEYS),
                                     gt=gt, scores=_to_list(sample.get('pred_scores')),
                                     invalid=bool(sample.get(INVALID_KEY))))

    def _label(self, record: dict) -> int:
        gt = record['gt']
        if isinstance(gt, list) and len(gt) == 1:
            gt = gt[0]
        if isinstance(gt, str):
            if normalize_action(gt) not in self.index:
                raise MetricInputError(f'ActionAccuracy: the label of {record["id"]!r} is '
                                       f'{gt!r}, not one of the {len(self.classes)} classes')
            return self.index[normalize_action(gt)]
        if not isinstance(gt, (int, np.integer)) or not 0 <= int(gt) < len(self.classes):
            raise MetricInputError(f'ActionAccuracy: the label of {record["id"]!r} is {gt!r}, '
                                   f'not a class index in [0, {len(self.classes)})')
        return int(gt)

    def score(self, records: List[dict]) -> Dict[str, float]:
        if self.classes is None:
            raise ValueError('ActionAccuracy has no classes: give classes=, or evaluate a '
                             'dataset whose metainfo has them (ActionListDataset)')
        labels = np.array([self._label(r) for r in records])
        invalid = np.array([is_invalid(r) for r in records], dtype=bool)
        text_pred = np.array([-1 if is_invalid(r) else self.index.get(normalize_action(r['pred']),
                                                                      -1) for r in records])
        answers = np.array([-1 if is_invalid(r) else answer_label(r['pred'], r.get('scores'),
                                                                   self.index) for r in records])
        metrics = dict(exact_match=percent(int((text_pred == labels).sum()), len(records)),
                       invalid_rate=percent(int((text_pred < 0).sum()), len(records)),
                       answer_acc=percent(int((answers == labels).sum()), len(records)))
        valid = [r for r in records if not is_invalid(r)]  # only these can have scores
        with_scores = [r.get('scores') is not None for r in valid]
        if any(with_scores) and not all(with_scores):
            missing = [r['id'] for r in valid if r.get('scores') is None]
            raise MetricInputError(f'ActionAccuracy: {len(missing)} samples have no class '
                                   f'scores while others do: {missing[:10]}')
        if valid and all(with_scores):
            block = np.array([r['scores'] for r in valid], dtype=np.float64)
            if block.shape != (len(valid), len(self.classes)):
                raise MetricInputError(f'ActionAccuracy: scores of shape {block.shape}, '
                                       f'expected ({len(valid)}, {len(self.classes)})')
            scores = np.zeros((len(records), len(self.classes)))
            scores[~invalid] = block
            ranking = np.argsort(-scores, axis=1, kind='stable')
            for k in self.topk:
                hit = (ranking[:, :k] == labels[:, None]).any(axis=1) & ~invalid
                metrics[f'top{k}'] = percent(int(hit.sum()), len(records))
            pred = np.where(invalid, -1, ranking[:, 0])
        else:
            metrics['top1'] = metrics['exact_match']
            pred = text_pred
        per_class = [float((pred[labels == c] == c).mean()) for c in np.unique(labels)]
        metrics['mean_class_acc'] = 100.0 * float(np.mean(per_class))
        for a, b in self.pairs:
            ia, ib = self.index[normalize_action(a)], self.index[normalize_action(b)]
            rows = (labels == ia) | (labels == ib)
            if rows.any():
                metrics[f'pair_acc/{a}|{b}'] = percent(int((pred[rows] == labels[rows]).sum()),
                                                       int(rows.sum()))
        if self.per_class:
            for c in np.unique(labels):
                metrics[f'class_acc/{self.classes[c]}'] = 100.0 * float(
                    (pred[labels == c] == c).mean())
        if self.confusion_matrix:
            self.write_confusion_matrix(labels, pred, self.confusion_matrix)
        return metrics

    def write_confusion_matrix(self, labels: np.ndarray, pred: np.ndarray, path: str) -> str:
        """Draw the row-normalized confusion matrix to ``path`` (PNG); invalid answers
        (predictions of -1, from text) get their own last column."""
        import os

        import matplotlib
        matplotlib.use('Agg')  # no display; a file only
        import matplotlib.pyplot as plt

        n = len(self.classes)
        invalid = bool((pred < 0).any())
        counts = np.zeros((n, n + invalid))
        np.add.at(counts, (labels, np.where(pred < 0, n, pred)), 1)
        rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        side = max(4.0, 0.45 * n + 2)
        fig, ax = plt.subplots(figsize=(side + invalid * 0.45, side))
        ax.imshow(rates, cmap='Blues', vmin=0, vmax=1)
        if n <= 40:  # numbers and names stay legible
            for i, j in zip(*np.nonzero(counts)):
                ax.text(j, i, f'{rates[i, j]:.2f}', ha='center', va='center', fontsize=7,
                        color='white' if rates[i, j] > 0.5 else 'black')
            ax.set_xticks(range(n + invalid), list(self.classes) + ['(invalid)'] * invalid,
                          rotation=60, ha='right', fontsize=8)
            ax.set_yticks(range(n), self.classes, fontsize=8)
        ax.set_xlabel('predicted')
        ax.set_ylabel('true')
        ax.set_title(f'{self.prefix}: {len(labels)} samples')
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
