# Stage 1 of the MoCap-Actions default model (stage 2 and the whole recipe:
# llava-tiny_mocap-actions.py). LLaVA's feature-alignment stage: the `plain` template, so a
# sample is the clip's tokens followed by its caption (the class name) and nothing else.
# Unlike LLaVA's stage 1 every part trains (nothing here is pretrained); the short sequences
# make it the cheap stage in which the vision tower learns to see.
#   python tools/train.py configs/llava_action/llava-tiny_mocap-actions_pretrain.py
_base_ = ['./llava-tiny_mocap-actions.py']

pretrain_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         tokens_per_image={{_base_.tokens_per_image}}, video_pooling={{_base_.video_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.zoom_size}}, crop_size={{_base_.image_size}}),
    dict(type='SubtractBackground'),
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}}, template='plain',
         max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=pretrain_pipeline))
load_base = None

max_iters = 2000
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.01), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
