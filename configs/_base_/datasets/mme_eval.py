# MME (official release folder MME_Benchmark_release_version, its 14 subtask folders) with
# LLaVA-1.5's prompt: the question without "Please answer yes or no.", then "Answer the
# question using a single word or phrase." (haotian-liu/LLaVA playground/data/eval/MME/
# llava_mme.jsonl, scripts/v1_5/eval/mme.sh). Scored as MME's eval_tool/calculation.py:
# keys perception, cognition and one per subtask (acc + acc+, x100).
_base_ = ['./llava_eval.py']
data_root = 'data/MME_Benchmark_release_version'
test_dataloader = dict(
    dataset=dict(
        type='MMEDataset',
        data_root=data_root,
        prompt_suffix='Answer the question using a single word or phrase.'))
# results_dir='work_dirs/mme_results' also writes {subtask}.txt for MME's calculation.py.
test_evaluator = dict(type='MMEMetric')
