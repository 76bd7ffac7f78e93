# LLaVA-1.5-7B on MME (reported by the authors: perception 1510.7, LLaVA-1.5 paper
# arXiv:2310.03744, and haotian-liu/LLaVA docs/MODEL_ZOO.md; metric key perception):
# python tools/test.py THIS_CONFIG model.safetensors
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/mme_eval.py',
    '../_base_/default_runtime.py',
]
# Greedy, short answers (the original evaluates with temperature 0).
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=16, num_beams=1, do_sample=False))
