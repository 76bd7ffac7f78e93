# VQAv2 val (official question/annotation files) with LLaVA-1.5's short-answer prompt, scored
# with the official VQA accuracy. For test-dev, set ann_file='' and the evaluator to
# dict(type='VQASubmissionWriter', file_path=..., all_question_file=...) and submit the file.
data_root = 'data/coco'
eval_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs', meta_keys=('sample_id', 'question_id', 'image_id', 'prompt',
                                            'question', 'answer_type')),
]
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='VQAv2Dataset',
        data_root=data_root,
        question_file='annotations/v2_OpenEnded_mscoco_val2014_questions.json',
        ann_file='annotations/v2_mscoco_val2014_annotations.json',
        img_prefix='val2014',
        prompt_suffix='Answer the question using a single word or phrase.',
        test_mode=True,
        pipeline=eval_pipeline))
test_evaluator = dict(type='VQAAccuracy')
test_cfg = dict(type='TestLoop')
