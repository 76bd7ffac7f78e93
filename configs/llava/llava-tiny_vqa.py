# The tiny LLaVA (random weights unless given some) with LLaVA-1.5's inference pipeline.
_base_ = [
    '../_base_/models/llava-tiny.py',
    '../_base_/datasets/llava_inference.py',
    '../_base_/default_runtime.py',
]
image_size = 56
test_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=image_size),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
