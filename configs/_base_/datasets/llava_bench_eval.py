# LLaVA-Bench (in-the-wild), the release folder liuhaotian/llava-bench-in-the-wild as published
# (questions.jsonl, context.jsonl, answers_gpt4.jsonl, images/). The prompt is LLaVA's
# llava/eval/model_vqa.py (run by scripts/v1_5/eval/llavabench.sh): "<image>\n{question}",
# nothing appended. The metric writes LLaVA's answers file; with judge_url set (any
# OpenAI-compatible endpoint) it also reviews the answers as eval_gpt_review_bench.py and
# reports summarize_gpt_review.py's relative scores (llava_bench/all, /conv, /detail,
# /complex). Without a judge, review the answers file afterwards:
#   python tools/analysis_tools/llava_bench_review.py --pred ANSWERS --ann DATA_ROOT \
#       --judge-url URL --judge-model NAME --out reviews.jsonl
_base_ = ['./llava_eval.py']
data_root = 'data/llava-bench-in-the-wild'
test_dataloader = dict(
    batch_size=1,  # long free-form answers: one at a time, as model_vqa.py
    dataset=dict(
        type='LLaVABenchDataset',
        data_root=data_root,
        ann_file='questions.jsonl',
        context_file='context.jsonl',
        answers_file='answers_gpt4.jsonl',
        img_prefix='images'))
test_evaluator = dict(
    type='LLaVABenchMetric',
    bench_dir=data_root,
    answers_file='work_dirs/llava_bench/answers.jsonl',
    judge_url=None,  # e.g. 'https://api.openai.com/v1' (key: $OPENAI_API_KEY)
    judge_model='gpt-4-0314',  # the original's judge
    prefix='llava_bench')
