from .checkpoint import (
                         CheckpointError,
                         StateDictMismatchError,
                         UnsafeCheckpointError,
                         load_model_weights,
                         load_weights,
                         save_weights,
)
from .hooks import TrainableOnlyCheckpointHook, trainable_state_dict_keys
from .optimizers import BF16OptimWrapper, LLaVAOptimWrapperConstructor
from .runner import (
                         LLaVAFlexibleRunner,
                         LLaVARunner,
                         ResumeOutsideWorkDirError,
                         build_runner,
                         check_resume_path,
                         load_partial_weights,
)
from .sample_hooks import DatasetInfoHook, EvaluateChatHook, describe_sample

__all__ = [
    'BF16OptimWrapper', 'CheckpointError', 'DatasetInfoHook', 'EvaluateChatHook',
    'LLaVAFlexibleRunner', 'LLaVAOptimWrapperConstructor', 'LLaVARunner',
    'ResumeOutsideWorkDirError', 'StateDictMismatchError', 'TrainableOnlyCheckpointHook',
    'UnsafeCheckpointError', 'build_runner', 'check_resume_path', 'describe_sample',
    'load_model_weights', 'load_partial_weights', 'load_weights', 'save_weights',
    'trainable_state_dict_keys'
]
