# LLaVA-1.5-7B LoRA instruction tuning as the authors ran it: r 128, alpha 256, dropout 0.05
# on every linear layer of the LLM (never CLIP's: LLaVA issue 1647), lr 2e-4 for the adapters
# and 2e-5 for the projector, global batch 128 (8 GPUs x 16), otherwise as the finetune.
# Checkpoints hold the adapters and the projector only; merge them with
#   python tools/model_converters/merge_lora.py configs/llava/llava-7b-v1.5_lora.py \
#       work_dirs/llava-7b-v1.5_lora/iter_5198.safetensors llava-7b-v1.5-lora-merged.safetensors
_base_ = ['./llava-7b-v1.5_finetune.py']
model = dict(freeze_llm=True, lora=dict(r=128, alpha=256, dropout=0.05, target_modules=None))
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(projector_lr=2e-5))
