# LLaVA-OneVision-Qwen2-7B-OV on MVBench, 16 frames a clip, with the prompt and scoring of
# video_chat2/mvbench.ipynb (configs/_base_/datasets/mvbench_eval.py). The authors report
# MVBench 56.7 (theirs, not measured by us: the LLaVA-OneVision paper, arXiv:2408.03326,
# evaluated with lmms-eval's own prompt and frames; metric here mvbench/mean):
#   python tools/test.py THIS_CONFIG checkpoints/llava-onevision-qwen2-7b-ov/model.safetensors
# Add likelihood ranking of the options: --cfg-options test_dataloader.dataset.rank_options=True
_base_ = [
    './llava-onevision-qwen2-7b-ov_vqa.py',
    '../_base_/datasets/mvbench_eval.py',
]
num_frames = 16
num_image_tokens = 729  # SigLIP-so400m-384: 27x27 a frame, before the clip pooling
video_pooling = {{_base_.video_pooling}}
test_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling),
    dict(type='ResizeSquare', size=384),
    dict(type='TokenizeConversation', tokenizer=None, template='qwen_1_5',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# Greedy; the notebook keeps the first line of at most 100 new tokens.
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=100, num_beams=1, do_sample=False))
