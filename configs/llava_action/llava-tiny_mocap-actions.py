# The default model: a tiny LLaVA trained by us on MoCap-Actions (clips of a rendered humanoid,
# 15 actions, two of them time-reversed pairs), start to finish on a 2-core CPU.
#
#   # 1. render the benchmark (train/val/test; test azimuths are held out of training)
#   python tools/dataset_converters/render_mocap_actions.py --out data/mocap_actions --seed 0 \
#       --clips-per-class 1000 --no-videos
#   # 2. its own tokenizer, trained on the benchmark's text and the template's prompt
#   python tools/misc/train_tokenizer.py --out resources/llava-tiny_mocap-actions \
#       --vocab-size 480 --no-chatml-tokens --llava-json data/mocap_actions/train_llava.json
#   # 3. train in two stages, then test on a test split rendered with an unseen seed (below)
#   python tools/train.py configs/llava_action/llava-tiny_mocap-actions_pretrain.py
#   python tools/train.py configs/llava_action/llava-tiny_mocap-actions.py
#
# Stages, as LLaVA's: 1 (llava-tiny_mocap-actions_pretrain.py, the base of this file: model,
# data and runtime) on the `plain` template (the clip's tokens, then the class name), 2 (this
# file) on vicuna_v1 with the closed-set question,
# loss on the answer and its </s>. Unlike LLaVA, every part trains in both stages: nothing here
# is pretrained (a small CLIP ViT and a small LLaMA from scratch). 18.7 minutes of training in
# all on a 2-core CPU (measured 2026-12-01); the results are in metafile.yml and the README.
_base_ = ['./llava-tiny_mocap-actions_pretrain.py']

train_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         num_image_tokens={{_base_.num_image_tokens}}, video_pooling={{_base_.video_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),  # grey silhouettes: see the transform
    dict(type='TemporalChannels', mode='differences'),  # frame t and its signed motion
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}},
         template={{_base_.template}}, max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         num_image_tokens={{_base_.num_image_tokens}}, video_pooling={{_base_.video_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),  # grey silhouettes: see the transform
    dict(type='TemporalChannels', mode='differences'),  # frame t and its signed motion
    dict(type='TokenizeConversation', tokenizer=None, template={{_base_.template}},
         add_generation_prompt=True, max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]

# Stage 1's lists (the hard pair oversampled) with this stage's pipeline: restated, since a
# config merges a list (ConcatDataset's datasets) whole, not item by item.
# Rawframes, read from the mmaction2 list: loading 8 JPEGs costs a tenth of decoding an mp4
# clip, and on 2 cores data loading competes with training for the CPU. The samples
# equal train_llava.json's (the same closed-set question and answer).
train_list = dict(type='ActionListDataset', data_root={{_base_.data_root}},
                  ann_file='train_list_rawframes.txt', label_map={{_base_.class_names}},
                  list_format='rawframes', img_prefix='rawframes', question_mode='closed',
                  pipeline=train_pipeline)
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
        dict(type='RepeatDataset', times={{_base_.hard_pair_repeats}},
             dataset=dict(train_list, filter_cfg=dict(classes={{_base_.hard_pair}})))]))

# Stage 2 starts from stage 1's weights (every parameter: nothing was frozen). A checkpoint
# that holds every parameter loads without its load_base, so the shipped weights need none.
load_base = 'work_dirs/llava-tiny_mocap-actions_pretrain/iter_2000.safetensors'
max_iters = 250
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.01), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))

# tools/test.py: the test split (held-out camera azimuths); render it with an unseen seed:
#   python tools/dataset_converters/render_mocap_actions.py --out data/mocap_actions_seed1 \
#       --seed 1 --clips-per-class 40 --no-rawframes
#   python tools/test.py configs/llava_action/llava-tiny_mocap-actions.py \
#       resources/llava-tiny_mocap-actions/model.safetensors \
#       --cfg-options test_dataloader.dataset.data_root=data/mocap_actions_seed1
# Frame-order probe: add test_dataloader.dataset.pipeline.0.frame_order=shuffled (or reversed).
test_data_root = 'data/mocap_actions_seed1'
test_dataloader = dict(
    batch_size=16,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    # The mmaction2 list and label map: the true labels come with the samples.
    dataset=dict(type='ActionListDataset', data_root=test_data_root,
                 ann_file='test_list_videos.txt', label_map={{_base_.class_names}},
                 list_format='videos', img_prefix='videos', question_mode='closed',
                 test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(type='ActionAccuracy', topk=(1, 5), per_class=True,
                      pairs=[('walking', 'walking backward'), ('getting up', 'lying down')])
test_cfg = dict(type='TestLoop')
