"""Metrics of generated text: captions, VQA, multiple choice, POPE, short answers, actions."""
from .action import ActionAccuracy, answer_label, normalize_action, read_label_map
from .base import GenerationMetric, MetricInputError
from .caption import CaptionMetric, check_java, spice_jars_present
from .dump import DumpPredictions
from .llava_bench import LLaVABenchMetric
from .mmbench import MMBenchMetric, mmbench_match
from .mme import MMEMetric
from .multiple_choice import MultipleChoiceAccuracy, parse_option_letter
from .mvbench import MVBenchMetric
from .pope import POPEMetric, binary_scores, parse_yes_no
from .seed_bench import SEEDBenchMetric
from .short_answer import ShortAnswerAccuracy, normalize_gqa_answer
from .vqa import (
    VQAAccuracy,
    VQASubmissionWriter,
    normalize_vqa_answer,
    vqa_accuracy,
    write_vqa_submission,
)

__all__ = [
    'ActionAccuracy', 'CaptionMetric', 'DumpPredictions', 'GenerationMetric', 'MetricInputError',
    'MultipleChoiceAccuracy', 'POPEMetric', 'ShortAnswerAccuracy', 'VQAAccuracy',
    'VQASubmissionWriter', 'answer_label', 'binary_scores', 'check_java', 'normalize_action',
    'normalize_gqa_answer', 'normalize_vqa_answer', 'parse_option_letter', 'parse_yes_no',
    'read_label_map', 'spice_jars_present', 'vqa_accuracy', 'write_vqa_submission'
]
__all__ += ['MMEMetric']
__all__ += ['LLaVABenchMetric']
__all__ += ['SEEDBenchMetric']
__all__ += ['MVBenchMetric']
__all__ += ['MMBenchMetric', 'mmbench_match']
