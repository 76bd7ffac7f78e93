# LLaVA-1.5-7B prompted for one-sentence captions (the LLaVA-1.5 short caption prompt).
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/llava_inference.py',
    '../_base_/default_runtime.py',
]
model = dict(
    task='caption',
    default_question='Provide a one-sentence caption for the provided image.',
    generation_cfg=dict(max_new_tokens=64))
