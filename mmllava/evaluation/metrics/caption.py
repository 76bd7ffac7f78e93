"""COCO caption metrics through pycocoevalcap, offline: SPICE only when its jars are there.

mmpretrain's ``COCOCaption`` always runs SPICE, whose first use downloads Stanford CoreNLP:
offline it fails. Here BLEU-1..4, METEOR, ROUGE-L and CIDEr always run (PTB tokenization, as
the COCO evaluation server), and SPICE runs when ``pycocoevalcap/spice/lib`` holds
``stanford-corenlp-3.6.0.jar`` and its models jar (a warning says how to add them otherwise).

The PTB tokenizer and METEOR are Java programs shipped inside pycocoevalcap: ``java`` (8 or
newer) must be on the PATH. Without it the metric stops with an error that says so, rather
than reporting numbers no one else can compare with.
"""
import os.path as osp
import shutil
import subprocess
from typing import Dict, List, Optional

from mmengine.logging import MMLogger

from mmllava.registry import METRICS

from .base import GenerationMetric, MetricInputError, listing

SPICE_JARS = ('stanford-corenlp-3.6.0.jar', 'stanford-corenlp-3.6.0-models.jar')


def check_java() -> str:
    """The path of a working ``java``, else a RuntimeError that says what to install."""
    java = shutil.which('java')
    error = None
    if java is not None:
        try:
            subprocess.run([java, '-version'], capture_output=True, check=True, timeout=60)
            return java
        except (OSError, subprocess.SubprocessError) as e:
            error = e
    raise RuntimeError(
        'Caption metrics need Java: pycocoevalcap\'s PTB tokenizer and METEOR are Java '
        f'programs, and {"no java is on the PATH" if java is None else f"{java} fails: {error}"}. '
        'Install a JRE (e.g. `apt-get install default-jre-headless`) and run again.')


def spice_jars_present() -> bool:
    """Whether SPICE can run without downloading (its CoreNLP jars are in place)."""
    import pycocoevalcap.spice.spice as spice
    lib = osp.join(osp.dirname(spice.__file__), 'lib')
    return all(osp.exists(osp.join(lib, jar)) for jar in SPICE_JARS)


@METRICS.register_module()
class CaptionMetric(GenerationMetric):
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and SPICE when possible) of generated captions.

    Records: ``pred`` (``pred_caption``), ``gt`` (``gt_caption``: the reference captions).

    Keys (pycocoevalcap's names, times 100): ``{prefix}/Bleu_1`` .. ``Bleu_4``, ``METEOR``,
    ``ROUGE_L``, ``CIDEr``, ``SPICE`` (when run); ``num_samples``, ``num_empty``,
    ``num_invalid``. An invalid sample (unreadable image) is scored as the empty caption (every
    scorer gives it 0; it still counts in the corpus-level BLEU's length).

    Args:
        spice (bool, optional): ``None``: run SPICE when its jars are present, else warn;
            ``True``: require it; ``False``: skip it.
        **kwargs: :class:`~mmllava.evaluation.metrics.base.GenerationMetric` arguments.
    """
    default_prefix = 'caption'
    gt_key = 'gt_caption'

    def __init__(self, spice: Optional[bool] = None, **kwargs):
        super().__init__(**kwargs)
        self.spice = spice

    def score(self, records: List[dict]) -> Dict[str, float]:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        bad = [r['id'] for r in records
               if isinstance(r['gt'], str) or not r['gt']
               or not all(isinstance(c, str) and c.strip() for c in r['gt'])]
        if bad:
            raise MetricInputError(f'CaptionMetric: {len(bad)} samples lack reference captions '
                                   f'(a non-empty list of non-empty str): {listing(bad)}')
        check_java()
        run_spice = self.spice
        if run_spice is None:
            run_spice = spice_jars_present()
            if not run_spice:
                MMLogger.get_current_instance().warning(
                    'SPICE skipped: pycocoevalcap/spice/lib lacks ' + ' and '.join(SPICE_JARS)
                    + ' (its first run downloads them from nlp.stanford.edu; copy them there '
                    'to get SPICE offline).')
        elif run_spice and not spice_jars_present():
            raise RuntimeError('spice=True but pycocoevalcap/spice/lib lacks '
                               + ' and '.join(SPICE_JARS))
        # pycocoevalcap keys by image id; ours may be any hashable: use positions.
        gts = {i: [dict(caption=c) for c in r['gt']] for i, r in enumerate(records)}
        res = {i: [dict(caption=r['pred'])] for i, r in enumerate(records)}
        tokenizer = PTBTokenizer()
        gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
        scorers = [(Bleu(4), ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4']), (Meteor(), 'METEOR'),
                   (Rouge(), 'ROUGE_L'), (Cider(), 'CIDEr')]
        if run_spice:
            from pycocoevalcap.spice.spice import Spice
            scorers.append((Spice(), 'SPICE'))
        metrics = {}
        for scorer, names in scorers:
            value, _ = scorer.compute_score(gts, res)
            if isinstance(names, list):
                metrics.update({n: 100.0 * v for n, v in zip(names, value)})
            else:
                metrics[names] = 100.0 * float(value)
        return metrics
