# LLaVA-1.5-7B on COCO Karpathy test captions: python tools/test.py THIS_CONFIG model.safetensors
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/coco_caption_eval.py',
    '../_base_/default_runtime.py',
]
model = dict(task='caption', generation_cfg=dict(max_new_tokens=64, num_beams=1,
                                                 do_sample=False))
