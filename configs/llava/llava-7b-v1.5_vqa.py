# LLaVA-1.5-7B for visual question answering (vicuna_v1 template, padded square images).
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/llava_inference.py',
    '../_base_/default_runtime.py',
]
model = dict(task='vqa', default_question='What is the person doing?')
