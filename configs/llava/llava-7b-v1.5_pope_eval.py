# LLaVA-1.5-7B on POPE, three COCO splits (authors': 85.9 = pope/f1_split_mean):
# python tools/test.py THIS_CONFIG model.safetensors
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/pope_eval.py',
    '../_base_/default_runtime.py',
]
# Greedy, short answers (the original evaluates with temperature 0).
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=16, num_beams=1, do_sample=False))
