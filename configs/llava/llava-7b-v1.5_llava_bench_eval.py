# LLaVA-1.5-7B on LLaVA-Bench (in-the-wild) (reported by the authors: 65.4 = llava_bench/all,
# haotian-liu/LLaVA docs/MODEL_ZOO.md, column "LLaVA-Bench-Wild"; their judge was GPT-4, so
# another judge gives another number):
# python tools/test.py THIS_CONFIG model.safetensors \
#     --cfg-options test_evaluator.judge_url=https://api.openai.com/v1
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/llava_bench_eval.py',
    '../_base_/default_runtime.py',
]
# Greedy (model_vqa.py --temperature 0), free-form answers of up to 1024 new tokens.
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=1024, num_beams=1, do_sample=False))
test_evaluator = dict(answers_file='work_dirs/llava-7b-v1.5_llava_bench_eval/answers.jsonl',
                      model_id='llava-v1.5-7b')
