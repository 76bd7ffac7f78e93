# LLaVA-1.6-Mistral-7B for visual question answering (mistral_instruct template, anyres images).
_base_ = [
    '../_base_/models/llava-v1.6-mistral-7b.py',
    '../_base_/default_runtime.py',
]
template = 'mistral_instruct'
test_pipeline = [
    dict(type='LoadVisuals', num_frames=32),
    dict(type='AnyresTiles'),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
model = dict(task='vqa', default_question='What is the person doing?')
