"""Write every generation to a JSON file (``tools/test.py --out``)."""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmllava.registry import METRICS

from .base import ID_KEYS, INVALID_KEY, PRED_KEYS, first_key


@METRICS.register_module()
class DumpPredictions(BaseMetric):
    """Save ``[{"question_id", "sample_id", "text", "prompt"}]`` as JSON.

    The file is what ``tools/analysis_tools/eval_predictions.py --pred`` reads, so a run's
    predictions can be scored again (or by another metric) without generating again. A sample
    whose visual could not be read also has ``"invalid_sample"`` (the reason), and a closed-set
    model's sample its ``"pred_scores"`` (one per class), so that offline scoring gives the
    run's numbers.

    Args:
        out_file (str): The ``.json`` to write.
        collect_device (str): As in mmengine.
        prefix (str, optional): As in mmengine (nothing is scored).
    """
    default_prefix = 'dump'

    def __init__(self, out_file: str, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not out_file.endswith('.json'):
            raise ValueError(f'The predictions file must be a .json, got {out_file!r}')
        self.out_file = out_file

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):
                sample = sample.to_dict()
            row = dict(question_id=first_key(sample, ID_KEYS), sample_id=sample.get('sample_id'),
                       text=first_key(sample, PRED_KEYS), prompt=sample.get('prompt'))
            if sample.get(INVALID_KEY):
                row[INVALID_KEY] = sample[INVALID_KEY]
            scores = sample.get('pred_scores')
            if scores is not None:  # closed-set models: the class ranking, for top-k offline
                row['pred_scores'] = [float(v) for v in
                                      (scores.tolist() if hasattr(scores, 'tolist') else scores)]
            self.results.append(row)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
        with open(self.out_file, 'w') as f:
            json.dump(results, f, indent=1)
        MMLogger.get_current_instance().info(
            f'{len(results)} predictions written to {self.out_file}')
        return {}
