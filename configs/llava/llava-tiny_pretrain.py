# Tiny LLaVA, stage 1 (feature alignment) on generated captions: the plain template, only the
# projector trains. Minutes on a laptop CPU:
#   python tools/train.py configs/llava/llava-tiny_pretrain.py
_base_ = [
    '../_base_/models/llava-tiny.py',
    '../_base_/datasets/tiny_llava_data.py',
    '../_base_/schedules/llava_tiny.py',
]
model = dict(freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True)
train_dataloader = {{_base_.tiny_pretrain_dataloader}}
optim_wrapper = dict(optimizer=dict(lr=1e-3))
# Base weights (a path or a list, safetensors or weights-only torch, mmllava layout): the tiny
# model trains from its random initialization, so there are none here. The 7B config names
# the converted Vicuna + CLIP weights.
load_base = None
