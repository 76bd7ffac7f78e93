# COCO Karpathy test captions with LLaVA-1.5's short caption prompt; BLEU, METEOR, ROUGE-L,
# CIDEr (SPICE when its jars are present). Needs java (pycocoevalcap's PTB tokenizer, METEOR).
data_root = 'data/coco'
eval_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='COCOCaptionDataset',
        data_root=data_root,
        ann_file='annotations/coco_karpathy_test.json',
        img_prefix='',
        test_mode=True,
        pipeline=eval_pipeline))
test_evaluator = dict(type='CaptionMetric')
test_cfg = dict(type='TestLoop')
