# ScienceQA-IMG test (official problems.json + pid_splits.json) with LLaVA-1.5's prompt
# (context, question, "A. ..." options, "Answer with the option's letter ..."), scored as
# multiple choice (LLaVA's eval_science_qa.py letter rules). image_only=False scores all
# test problems (text-only ones have no <image>).
_base_ = ['./llava_eval.py']
data_root = 'data/scienceqa'
test_dataloader = dict(
    dataset=dict(
        type='ScienceQADataset',
        data_root=data_root,
        ann_file='problems.json',
        split_file='pid_splits.json',
        split='test',
        image_only=True,
        img_prefix='images/test'))
test_evaluator = dict(type='MultipleChoiceAccuracy', prefix='mc')
