from .checkpoint import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    load_model_weights,
    load_over_bases,
    load_partial_files,
    load_partial_weights,
    load_weights,
    save_weights,
)
from .hooks import TrainableOnlyCheckpointHook, trainable_state_dict_keys
from .optimizers import BF16OptimWrapper, LlavaOptimWrapperConstructor
from .runner import (
    LlavaFlexibleRunner,
    LlavaRunner,
    ResumeOutsideWorkDirError,
    build_runner,
    check_resume_path,
    find_resume_checkpoint,
)
from .sample_hooks import DatasetInfoHook, EvaluateChatHook, describe_sample

__all__ = [
    'BF16OptimWrapper', 'CheckpointError', 'DatasetInfoHook', 'EvaluateChatHook',
    'LlavaFlexibleRunner', 'LlavaOptimWrapperConstructor', 'LlavaRunner',
    'ResumeOutsideWorkDirError', 'StateDictMismatchError', 'TrainableOnlyCheckpointHook',
    'UnsafeCheckpointError', 'build_runner', 'check_resume_path', 'describe_sample',
    'find_resume_checkpoint',
    'load_model_weights', 'load_over_bases', 'load_partial_files', 'load_partial_weights',
    'load_weights', 'save_weights', 'trainable_state_dict_keys'
]
