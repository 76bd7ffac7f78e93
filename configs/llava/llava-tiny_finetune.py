# Tiny LLaVA, stage 2 (visual instruction tuning) on generated conversations: vicuna_v1,
# projector + LLM train, the vision tower stays frozen.
#   python tools/train.py configs/llava/llava-tiny_finetune.py
# To start from stage 1, give its trainable weights (the .safetensors twin of a checkpoint):
#   --cfg-options load_base=work_dirs/llava-tiny_pretrain/iter_60.safetensors
_base_ = [
    '../_base_/models/llava-tiny.py',
    '../_base_/datasets/tiny_llava_data.py',
    '../_base_/schedules/llava_tiny.py',
]
model = dict(freeze_vision_encoder=True, freeze_projector=False, freeze_llm=False,
             llm=dict(gradient_checkpointing=False))
train_dataloader = {{_base_.tiny_finetune_dataloader}}
optim_wrapper = dict(optimizer=dict(lr=1e-3))
load_base = None
