# POPE (official coco_pope_{adversarial,popular,random}.json JSON lines) on COCO val2014 with
# LLaVA-1.5's short-answer prompt; pope/f1_split_mean is the number LLaVA reports. With the
# three files in one run the question ids become "{split}_{id}" (each file numbers from 1).
data_root = 'data/pope'
eval_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs', meta_keys=('sample_id', 'question_id', 'prompt', 'question',
                                            'category')),
]
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='POPEDataset',
        data_root=data_root,
        ann_file=['coco/coco_pope_adversarial.json', 'coco/coco_pope_popular.json',
                  'coco/coco_pope_random.json'],
        img_prefix='val2014',
        prompt_suffix='Answer the question using a single word or phrase.',
        test_mode=True,
        pipeline=eval_pipeline))
test_evaluator = dict(type='POPEMetric', prefix='pope')
test_cfg = dict(type='TestLoop')
