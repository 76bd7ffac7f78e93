# ScienceQA-IMG test (official problems.json + pid_splits.json) with LLaVA-1.5's prompt
# (context, question, "A. ..." options, "Answer with the option's letter ..."), scored as
# multiple choice (LLaVA's eval_science_qa.py letter rules). image_only=False scores all
# test problems (text-only ones have no <image>).
data_root = 'data/scienceqa'
eval_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs', meta_keys=('sample_id', 'question_id', 'prompt', 'question',
                                            'choices', 'category')),
]
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='ScienceQADataset',
        data_root=data_root,
        ann_file='problems.json',
        split_file='pid_splits.json',
        split='test',
        image_only=True,
        img_prefix='images/test',
        test_mode=True,
        pipeline=eval_pipeline))
test_evaluator = dict(type='MultipleChoiceAccuracy', prefix='mc')
test_cfg = dict(type='TestLoop')
