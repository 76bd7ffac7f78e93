# TextVQA val (official TextVQA_0.5.1_val.json) with LLaVA-1.5's short-answer prompt, scored
# with VQA accuracy and TextVQA's answer normalization (every human answer normalized, as
# LLaVA's m4c evaluator). LLaVA-1.5's reported 58.2 adds a "Reference OCR token: ..." line;
# for it set ocr_file='TextVQA_Rosetta_OCR_v0.2_val.json' (official OCR tokens).
_base_ = ['./llava_eval.py']
data_root = 'data/textvqa'
test_dataloader = dict(
    dataset=dict(
        type='TextVQADataset',
        data_root=data_root,
        ann_file='TextVQA_0.5.1_val.json',
        ocr_file='',
        img_prefix='train_images',
        prompt_suffix='Answer the question using a single word or phrase.'))
test_evaluator = dict(type='VQAAccuracy', normalize_gt='full', prefix='textvqa')
