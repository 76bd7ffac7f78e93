# LLaVA-1.6-Vicuna-7B for visual question answering (vicuna_v1 template, anyres images).
_base_ = [
    '../_base_/models/llava-v1.6-vicuna-7b.py',
    '../_base_/default_runtime.py',
]
template = 'vicuna_v1'
test_pipeline = [
    dict(type='LoadVisuals', num_frames=32),
    dict(type='AnyresTiles'),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
model = dict(task='vqa', default_question='What is the person doing?')
