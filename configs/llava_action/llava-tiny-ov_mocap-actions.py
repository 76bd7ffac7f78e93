# The tiny OneVision-style LLaVA on MoCap-Actions, stage 2: the default model's stage 2
# (llava-tiny_mocap-actions.py: closed-set question, vicuna_v1, 250 iterations, the test
# split and metric) on the OneVision-style model of llava-tiny-ov_mocap-actions_pretrain.py,
# from its stage-1 weights.
#   python tools/train.py configs/llava_action/llava-tiny-ov_mocap-actions.py
#   python tools/test.py configs/llava_action/llava-tiny-ov_mocap-actions.py \
#       work_dirs/llava-tiny-ov_mocap-actions/iter_250.safetensors \
#       --cfg-options test_dataloader.dataset.data_root=data/mocap_actions_seed1
_base_ = ['./llava-tiny_mocap-actions.py', '../_base_/models/llava-tiny-ov_mocap-actions.py']
model = {{_base_.ov_model}}
train_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         num_image_tokens={{_base_.num_image_tokens}}, video_pooling={{_base_.ov_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),
    dict(type='TemporalChannels', mode='differences'),
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}},
         template={{_base_.template}}, max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         num_image_tokens={{_base_.num_image_tokens}}, video_pooling={{_base_.ov_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),
    dict(type='TemporalChannels', mode='differences'),
    dict(type='TokenizeConversation', tokenizer=None, template={{_base_.template}},
         add_generation_prompt=True, max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
train_list = dict(type='ActionListDataset', data_root={{_base_.data_root}},
                  ann_file='train_list_rawframes.txt', label_map={{_base_.class_names}},
                  list_format='rawframes', img_prefix='rawframes', question_mode='closed',
                  pipeline=train_pipeline)
train_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        train_list,
        dict(type='RepeatDataset', times={{_base_.hard_pair_repeats}},
             dataset=dict(train_list, filter_cfg=dict(classes={{_base_.hard_pair}})))]))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
load_base = 'work_dirs/llava-tiny-ov_mocap-actions_pretrain/iter_2000.safetensors'
