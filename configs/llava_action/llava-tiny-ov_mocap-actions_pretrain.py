# A tiny OneVision-style LLaVA on MoCap-Actions, stage 1: the default model's recipe
# (llava-tiny_mocap-actions_pretrain.py: data, schedule, frames, channels, tokenizer) with
# OneVision's architecture in miniature: a SigLIP-style tower (no CLS token, every patch token,
# its last layer), a Qwen2-style LLM (biased q/k/v projections), and OneVision's clip pooling
# (each frame's 4 x 4 grid bilinearly halved to 2 x 2 after the projector) with one learned
# image_newline a clip. Same sizes as the default model, trained from scratch the same way.
#   python tools/train.py configs/llava_action/llava-tiny-ov_mocap-actions_pretrain.py
#   python tools/train.py configs/llava_action/llava-tiny-ov_mocap-actions.py
_base_ = ['./llava-tiny_mocap-actions_pretrain.py',
          '../_base_/models/llava-tiny-ov_mocap-actions.py']
model = {{_base_.ov_model}}
pretrain_pipeline = [
    dict(type='LoadVisuals', num_frames={{_base_.num_frames}},
         num_image_tokens={{_base_.num_image_tokens}}, video_pooling={{_base_.ov_pooling}}),
    dict(type='CLIPResizeCrop', size={{_base_.image_size}}),
    dict(type='SubtractBackground'),
    dict(type='TemporalChannels', mode='differences'),
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}}, template='plain',
         max_length={{_base_.max_length}}),
    dict(type='PackLlavaInputs'),
]
train_list = dict(type='ActionListDataset', data_root={{_base_.data_root}},
                  ann_file='train_list_rawframes.txt', label_map={{_base_.class_names}},
                  list_format='rawframes', img_prefix='rawframes', question_mode='closed',
                  pipeline=pretrain_pipeline)
train_dataloader = dict(
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        train_list,
        dict(type='RepeatDataset', times={{_base_.hard_pair_repeats}},
             dataset=dict(train_list, filter_cfg=dict(classes={{_base_.hard_pair}})))]))
