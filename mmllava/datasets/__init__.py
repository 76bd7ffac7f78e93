"""Datasets (annotations -> samples), samplers, the tiny rendered data, and the transforms."""
from .action_lists import (
    OPEN_QUESTION,
    ActionListDataset,
    ActionListEntry,
    action_question,
    closed_set_question,
    llava_action_sample,
    read_action_list,
)
from .base import (
    PROBLEM_NAMES,
    BaseLlavaDataset,
    InvalidSampleError,
    SkippedSample,
    classify_error,
    labels_fully_masked,
)
from .benchmarks import GQADataset, POPEDataset, ScienceQADataset, TextVQADataset
from .coco_caption import COCOCaptionDataset
from .collate import llava_collate
from .llava_bench import LLaVABenchDataset
from .llava_instruct import LlavaInstructDataset
from .mmbench import MMBenchDataset, read_mmbench_tsv
from .mme import MMEDataset
from .mocap_actions import CLASS_NAMES as MOCAP_ACTION_CLASSES
from .mocap_actions import MOCAP_ACTION_QUESTION
from .mvbench import MVBenchDataset, read_mvbench
from .samplers import LengthGroupedSampler
from .seed_bench import SEEDBenchDataset, SEEDBenchLoadVisuals, read_seed_bench
from .synthetic import TinyLlavaDataset, ensure_tiny_llava_data, make_tiny_llava_data
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transform_names
from .vqav2 import VQAv2Dataset

__all__ = [
    'BaseLlavaDataset', 'COCOCaptionDataset', 'InvalidSampleError', 'LlavaInstructDataset',
    'LengthGroupedSampler', 'PROBLEM_NAMES', 'SkippedSample', 'TinyLlavaDataset',
    'VQAv2Dataset', 'classify_error', 'ensure_tiny_llava_data', 'labels_fully_masked',
    'make_tiny_llava_data', 'llava_collate', 'MOCAP_ACTION_CLASSES', 'MOCAP_ACTION_QUESTION'
] + list(_transform_names)
__all__ += ['GQADataset', 'POPEDataset', 'ScienceQADataset', 'TextVQADataset']
__all__ += [
    'ActionListDataset', 'ActionListEntry', 'OPEN_QUESTION', 'action_question',
    'closed_set_question', 'llava_action_sample', 'read_action_list'
]
__all__ += ['MMEDataset']
__all__ += ['LLaVABenchDataset']
__all__ += ['SEEDBenchDataset', 'SEEDBenchLoadVisuals', 'read_seed_bench']
__all__ += ['MVBenchDataset', 'read_mvbench']
__all__ += ['MMBenchDataset', 'read_mmbench_tsv']
