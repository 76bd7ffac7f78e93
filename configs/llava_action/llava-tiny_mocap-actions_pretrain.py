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
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),
    dict(type='TemporalChannels', mode='differences'),
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}}, template='plain',
         max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
# The stage-2 lists (the hard pair oversampled as there), with this stage's pipeline: restated,
# since a config merges a list (ConcatDataset's datasets) whole, not item by item.
train_list = dict(type='ActionListDataset', data_root={{_base_.data_root}},
                  ann_file='train_list_rawframes.txt', label_map={{_base_.class_names}},
                  list_format='rawframes', img_prefix='rawframes', question_mode='closed',
                  pipeline=pretrain_pipeline)
train_dataloader = dict(dataset=dict(datasets=[
    train_list,
    dict(type='RepeatDataset', times={{_base_.hard_pair_repeats}},
         dataset=dict(train_list, filter_cfg=dict(classes={{_base_.hard_pair}})))]))
load_base = None

max_iters = 2000
# 2e-4: a probe of this tower (see TemporalChannels) never left chance on the walking pair at
# 5e-4 or above.
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.01), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
