from .data_preprocessor import LlavaDataPreprocessor
from .llava import IMAGE_TOKEN_INDEX, Llava
from .llm import HFCausalLM
from .peft import apply_lora, find_linear_names, merge_lora, to_lora_keys
from .projectors import LlavaProjector
from .quantize import Int8DynamicLinear, quantize_llm_int8
from .video import (
    AvgPool2x2FramePooling,
    BilinearFramePooling,
    MaxPool2x2FramePooling,
    NoFramePooling,
    SpatialTemporalFramePooling,
    build_frame_pooling,
    frame_position_embedding,
)
from .vision import HFCLIPVisionEncoder, HFSiglipVisionEncoder, OpenCLIPVisionEncoder

__all__ = [
    'AvgPool2x2FramePooling', 'BilinearFramePooling', 'MaxPool2x2FramePooling',
    'Int8DynamicLinear', 'NoFramePooling',
    'SpatialTemporalFramePooling',
    'build_frame_pooling', 'frame_position_embedding', 'HFCLIPVisionEncoder',
    'HFSiglipVisionEncoder', 'IMAGE_TOKEN_INDEX',
    'Llava', 'LlavaDataPreprocessor',
    'OpenCLIPVisionEncoder', 'apply_lora', 'HFCausalLM', 'LlavaProjector',
    'find_linear_names', 'merge_lora', 'quantize_llm_int8', 'to_lora_keys'
]
