# Tiny LLaVA, LoRA instruction tuning: adapters on the LLM's linear layers only (never the
# vision tower or the projector), the projector at its own learning rate.
#   python tools/train.py configs/llava/llava-tiny_lora.py
#   python tools/model_converters/merge_lora.py configs/llava/llava-tiny_lora.py \
#       work_dirs/llava-tiny_lora/iter_60.safetensors merged.safetensors
_base_ = [
    '../_base_/models/llava-tiny.py',
    '../_base_/datasets/tiny_llava_data.py',
    '../_base_/schedules/llava_tiny.py',
]
model = dict(freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora=dict(r=16, alpha=32, dropout=0.05, target_modules=None))
train_dataloader = {{_base_.tiny_finetune_dataloader}}
optim_wrapper = dict(optimizer=dict(lr=2e-3), paramwise_cfg=dict(projector_lr=1e-3))
load_base = None
