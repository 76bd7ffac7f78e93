# LLaVA-1.5-7B on MMBench dev (mmbench_dev_20230712.tsv), CircularEval; metric `overall`.
# The authors report 64.3 (theirs, from MMBench's evaluation server: LLaVA-1.5 paper, Table 4,
# column MMB, arXiv:2310.03744; haotian-liu/LLaVA docs/MODEL_ZOO.md, column MM-Bench):
# python tools/test.py THIS_CONFIG model.safetensors --out preds.json
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/mmbench_eval.py',
    '../_base_/default_runtime.py',
]
# Greedy (the original evaluates with temperature 0). It allows 1024 new tokens; with the
# one-letter instruction the answers stop at once, 128 leaves room for a sentence.
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=128, num_beams=1, do_sample=False))
