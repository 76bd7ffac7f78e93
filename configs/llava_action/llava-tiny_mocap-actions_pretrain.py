# Stage 1 of the MoCap-Actions default model (stage 2 and the whole recipe:
# llava-tiny_mocap-actions.py, which starts from this stage's weights). LLaVA's
# feature-alignment stage: the `plain` template, so a sample is the clip's tokens followed by
# its caption (the class name) and nothing else. Unlike LLaVA's stage 1 every part trains
# (nothing here is pretrained); the short sequences make it the cheap stage in which the
# vision tower learns to see. Training only: the model is tested (and served) after stage 2,
# whose config holds the test pipeline, loader and metric.
#   python tools/train.py configs/llava_action/llava-tiny_mocap-actions_pretrain.py
_base_ = ['../_base_/models/llava-tiny_mocap-actions.py', '../_base_/schedules/llava_tiny.py']

data_root = 'data/mocap_actions'
pretrain_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         num_image_tokens={{_base_.num_image_tokens}}, video_pooling={{_base_.video_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),
    dict(type='TemporalChannels', mode='differences'),
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}}, template='plain',
         max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
# Walking / walking backward, the hard pair (one motion, time-reversed, from any side: only
# the facing and the swing foot tell them apart), is drawn five times as often as the other
# classes: the whole list, then the pair's clips `hard_pair_repeats` times more.
hard_pair = ['walking', 'walking backward']
hard_pair_repeats = 4
# Rawframes, read from the mmaction2 list: loading 8 JPEGs costs a tenth of decoding an mp4
# clip, and on 2 cores data loading competes with training for the CPU. The samples
# equal train_llava.json's (the same closed-set question and answer).
train_list = dict(type='ActionListDataset', data_root=data_root,
                  ann_file='train_list_rawframes.txt', label_map={{_base_.class_names}},
                  list_format='rawframes', img_prefix='rawframes', question_mode='closed',
                  pipeline=pretrain_pipeline)
batch_size = 16
train_dataloader = dict(
    batch_size=batch_size,
    # In the training process: on 2 cores a worker process slows the 2-thread training step
    # more than it saves (stage 1, back-to-back 80-iteration probes: 0.42 s/iteration without
    # it, 0.49 s with one).
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='ConcatDataset', datasets=[
        train_list,
        dict(type='RepeatDataset', times=hard_pair_repeats,
             dataset=dict(train_list, filter_cfg=dict(classes=hard_pair)))]))

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
log_processor = dict(by_epoch=False, window_size=20)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False, max_keep_ckpts=1))
randomness = dict(seed=0)
