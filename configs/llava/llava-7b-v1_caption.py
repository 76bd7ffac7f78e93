# LLaVA-1 (v1-0719 style) 7B captioning: one linear projector, CLIP ViT-L/14 at 224, no
# padding to square (LLaVA-1 crops), llava_v1 template.
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/llava_inference.py',
    '../_base_/default_runtime.py',
]
image_size = 224
template = 'llava_v1'
model = dict(
    vision_encoder=dict(config=dict(image_size=224)),
    projector=dict(projector_type='linear'),
    # LLaVA-1 checkpoints add <im_patch>, <im_start>, <im_end> to LLaMA's 32000 tokens.
    llm=dict(config=dict(max_position_embeddings=2048, vocab_size=32003)),
    task='caption',
    default_question='Describe the image concisely.',
    generation_cfg=dict(max_new_tokens=64))
test_pipeline = [
    dict(type='LoadImages'),
    dict(type='CLIPResizeCrop', size=image_size),
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
