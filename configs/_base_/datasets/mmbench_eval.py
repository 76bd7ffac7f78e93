# MMBench dev from the released TSV (mmbench_dev_20230712.tsv: base64 pictures, its circular
# copies at index + k * 1e6 asked as written; a TSV without copies is rotated here) with
# LLaVA-1.5's prompt (llava/eval/model_vqa_mmbench.py --single-pred-prompt: hint, question,
# "A. ..." options, "Answer with the option's letter from the given choices directly.").
# Scored with CircularEval: keys overall and one per category (no prefix). The Chinese TSVs:
# prompt_suffix='请直接回答选项字母。' (its --lang cn). For the test split, write the server's
# file: tools/analysis_tools/mmbench_submission.py --pred PREDS --ann TSV --out FILE.xlsx
_base_ = ['./llava_eval.py']
data_root = 'data/mmbench'
test_dataloader = dict(
    dataset=dict(
        type='MMBenchDataset',
        data_root=data_root,
        ann_file='mmbench_dev_20230712.tsv',
        circular=True))
test_evaluator = dict(type='MMBenchMetric')
