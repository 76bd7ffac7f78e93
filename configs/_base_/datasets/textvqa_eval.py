# TextVQA val (official TextVQA_0.5.1_val.json) with LLaVA-1.5's short-answer prompt, scored
# with VQA accuracy and TextVQA's answer normalization (every human answer normalized, as
# LLaVA's m4c evaluator). LLaVA-1.5's reported 58.2 adds a "Reference OCR token: ..." line;
# for it set ocr_file='TextVQA_Rosetta_OCR_v0.2_val.json' (official OCR tokens).
data_root = 'data/textvqa'
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
        type='TextVQADataset',
        data_root=data_root,
        ann_file='TextVQA_0.5.1_val.json',
        ocr_file='',
        img_prefix='train_images',
        prompt_suffix='Answer the question using a single word or phrase.',
        test_mode=True,
        pipeline=eval_pipeline))
test_evaluator = dict(type='VQAAccuracy', normalize_gt='full', prefix='textvqa')
test_cfg = dict(type='TestLoop')
