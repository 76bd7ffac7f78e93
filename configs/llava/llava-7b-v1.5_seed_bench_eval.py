# LLaVA-1.5-7B on SEED-Bench v1 as LLaVA evaluates it (scripts/v1_5/eval/seed.sh: the letter
# prompt, video questions on their middle frame). Reported by the authors (LLaVA-1.5 paper,
# Improved Baselines with Visual Instruction Tuning, Table 4): 58.6 all, 66.1 image, 37.3
# video (metrics seed/overall, seed/image, seed/video).
# python tools/test.py THIS_CONFIG model.safetensors --out preds.json
# SEED-Bench's own scoring (choice likelihood): --cfg-options
#   test_dataloader.dataset.rank_options=True
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/datasets/seed_bench_eval.py',
    '../_base_/default_runtime.py',
]
# Greedy, short answers (the original evaluates with temperature 0).
model = dict(task='vqa', generation_cfg=dict(max_new_tokens=16, num_beams=1, do_sample=False))
