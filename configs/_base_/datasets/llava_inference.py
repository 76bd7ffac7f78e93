# The original LLaVA-1.5 preprocessing: pad to square with the CLIP mean colour, then CLIP's
# resize (short side 336, bicubic) and centre crop 336. Normalization happens in the model's
# data preprocessor. TokenizeConversation's tokenizer and image token count default to the
# model's when the inferencer builds this pipeline.
image_size = 336
template = 'vicuna_v1'
test_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=image_size),
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
