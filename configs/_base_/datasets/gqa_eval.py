# GQA test-dev balanced (official testdev_balanced_questions.json) with LLaVA-1.5's
# short-answer prompt, scored by exact match after LLaVA's GQA normalization.
data_root = 'data/gqa'
eval_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs', meta_keys=('sample_id', 'question_id', 'prompt', 'question')),
]
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='GQADataset',
        data_root=data_root,
        ann_file='testdev_balanced_questions.json',
        img_prefix='images',
        prompt_suffix='Answer the question using a single word or phrase.',
        test_mode=True,
        pipeline=eval_pipeline))
test_evaluator = dict(type='ShortAnswerAccuracy', normalization='gqa', prefix='gqa')
test_cfg = dict(type='TestLoop')
