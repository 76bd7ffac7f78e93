# LLaVA-1.5-7B on VQAv2 val: python tools/test.py THIS_CONFIG model.safetensors
# (authors' test-dev: 78.5; see configs/_base_/datasets/vqav2_eval.py for a submission).
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/vqav2_eval.py',
    '../_base_/default_runtime.py',
]
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=16, num_beams=1, do_sample=False))
