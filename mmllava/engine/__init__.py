from .checkpoint import (
                         CheckpointError,
                         StateDictMismatchError,
                         UnsafeCheckpointError,
                         load_model_weights,
                         load_weights,
                         save_weights,
)

__all__ = [
    'CheckpointError', 'StateDictMismatchError', 'UnsafeCheckpointError', 'load_model_weights',
    'load_weights', 'save_weights'
]
