# GQA test-dev balanced (official testdev_balanced_questions.json) with LLaVA-1.5's
# short-answer prompt, scored by exact match after LLaVA's GQA normalization.
_base_ = ['./llava_eval.py']
data_root = 'data/gqa'
test_dataloader = dict(
    dataset=dict(
        type='GQADataset',
        data_root=data_root,
        ann_file='testdev_balanced_questions.json',
        img_prefix='images',
        prompt_suffix='Answer the question using a single word or phrase.'))
test_evaluator = dict(type='ShortAnswerAccuracy', normalization='gqa', prefix='gqa')
