# LLaVA-OneVision-Qwen2-7B-OV: images (anyres_max_9), several images (padded, not tiled),
# clips (32 frames, 196 tokens each and one newline).
_base_ = [
    '../_base_/models/llava-onevision-qwen2-7b.py',
    '../_base_/default_runtime.py',
]
template = 'qwen_1_5'

test_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}}),
    dict(type='AnyresTiles', multi_image='pad', background=(127, 127, 127)),
    dict(type='ResizeSquare', size={{_base_.image_size}}),
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
model = dict(task='vqa', default_question='What is the person doing?')
