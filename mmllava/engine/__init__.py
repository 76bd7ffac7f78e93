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

__all__ = [
    'BF16OptimWrapper', 'CheckpointError', 'LLaVAFlexibleRunner', 'LLaVAOptimWrapperConstructor',
    'LLaVARunner', 'ResumeOutsideWorkDirError', 'StateDictMismatchError',
    'TrainableOnlyCheckpointHook', 'UnsafeCheckpointError', 'build_runner', 'check_resume_path',
    'load_model_weights', 'load_partial_weights', 'load_weights', 'save_weights',
    'trainable_state_dict_keys'
]
