# LLaVA-NeXT-Video-7B: questions about clips (32 frames, 144 tokens each) and anyres images.
_base_ = [
    '../_base_/models/llava-next-video-7b.py',
    '../_base_/default_runtime.py',
]
template = 'vicuna_v1'
test_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}}),
    dict(type='AnyresTiles'),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
model = dict(task='vqa', default_question='What is the person doing?')
