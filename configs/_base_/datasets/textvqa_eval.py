# TextVQA val (official TextVQA_0.5.1_val.json) with LLaVA-1.5's prompt, the one behind its
# reported 58.2 (llava_textvqa_val_v051_ocr.jsonl): the question, a "Reference OCR token: ..."
# line with the official Rosetta OCR tokens (TextVQA_Rosetta_OCR_v0.2_val.json, from
# https://dl.fbaipublicfiles.com/textvqa/data/), then the short-answer instruction. Scored with
# VQA accuracy and TextVQA's answer normalization (every human answer normalized, as LLaVA's
# m4c evaluator). with_ocr=False gives the prompt without OCR tokens.
_base_ = ['./llava_eval.py']
data_root = 'data/textvqa'
test_dataloader = dict(
    dataset=dict(
        type='TextVQADataset',
        data_root=data_root,
        ann_file='TextVQA_0.5.1_val.json',
        ocr_file='TextVQA_Rosetta_OCR_v0.2_val.json',
        with_ocr=True,
        img_prefix='train_images',
        prompt_suffix='Answer the question using a single word or phrase.'))
test_evaluator = dict(type='VQAAccuracy', normalize_gt='full', prefix='textvqa')
