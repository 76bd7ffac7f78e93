# LLaVA-1.5-7B on ScienceQA-IMG test (authors': 66.8; metric mc/acc):
# python tools/test.py THIS_CONFIG model.safetensors
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/scienceqa_eval.py',
    '../_base_/default_runtime.py',
]
# Greedy, short answers (the original evaluates with temperature 0).
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=16, num_beams=1, do_sample=False))
