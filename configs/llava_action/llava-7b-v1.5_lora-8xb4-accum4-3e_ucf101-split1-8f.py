# LLaVA-1.5-7B, LoRA finetuned for action recognition on UCF101 split 1 (101 classes), from the
# released LLaVA-1.5-7B. The LoRA recipe of ../llava/llava-7b-v1.5_lora.py as the authors'
# finetune_task_lora.sh runs it: r 128, alpha 256, dropout 0.05 on the LLM's linears; lr 2e-4,
# projector 2e-5; global batch 128 = 8 GPUs x 4 clips x 4 accumulated steps; cosine with 3%
# warmup; bf16, gradient checkpointing. On clips: 8 frames, one drawn at random in each of 8
# equal segments for training (temporal jitter) and the segment midpoints for testing; each
# frame's 24 x 24 CLIP tokens pooled 2 x 2 (avgpool2x2: 144 tokens a frame, 1152 a clip).
# The question lists the 101 classes ("closed"); the answer is the class name, as words
# (mmllava.datasets.label_map.readable_class_name: "ApplyEyeMakeup" -> "apply eye makeup").
# Epochs: 3. One epoch of the 9,537 training clips is 75 optimizer steps at batch 128, too few
# for LoRA to settle at lr 2e-4 (3% warmup is 2 steps); 3 epochs give 224 (not measured here).
# Validation: the test list every epoch (UCF101 has no separate validation split, as in
# mmaction2); the best top-1 checkpoint is kept, so report the last one for an unbiased number.
#   bash tools/dist_train.sh \
#       configs/llava_action/llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py 8
# Data (mmaction2's layout, tools/data/ucf101) and evaluation: see README.md here.
_base_ = ['../llava/llava-7b-v1.5_lora.py']

# LLaVA-1.5-7B converted by tools/model_converters/llava_to_mmllava.py from llava-hf or from
# the original checkpoint: model.safetensors, and tokenizer.model or tokenizer.json, in one
# folder (the LLM takes the vocabulary rows of these weights: 32064 or 32000).
load_base = 'checkpoints/llava-7b-v1.5/model.safetensors'
tokenizer = 'checkpoints/llava-7b-v1.5'

data_root = 'data/ucf101'
label_map = 'label_map.txt'  # mmaction2's tools/data/ucf101/label_map.txt
list_format = 'videos'
img_prefix = 'videos'
train_list = 'ucf101_train_split_1_videos.txt'
test_list = 'ucf101_val_split_1_videos.txt'
question_mode = 'closed'
# The clip settings every action recipe shares (they inherit this file), stated once: frames
# per clip, tokens of one CLIP frame, and the pooling the model and the loaders agree on.
num_frames = 8
num_image_tokens = 576  # CLIP ViT-L/14-336
video_pooling = 'avgpool2x2'
# A clip whose stream ends or breaks early is sampled from the frames that decode, with a
# warning giving the counts, when at least this share of them does; below, it is refused
# (in test mode: scored as a miss and counted).
min_decoded_fraction = 0.5
model = dict(tokenizer=tokenizer, video_pooling=video_pooling)
batch_size = 4
accumulative_counts = 4
max_epochs = 3

train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, temporal_jitter=True,
         min_decoded_fraction=min_decoded_fraction),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         max_length=2048, truncate=True),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling,
         min_decoded_fraction=min_decoded_fraction),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(_delete_=True, type='LengthGroupedSampler', batch_size=batch_size,
                 group_by_modality=True),
    dataset=dict(
        _delete_=True,
        type='ActionListDataset',
        data_root=data_root,
        ann_file=train_list,
        label_map=label_map,
        list_format=list_format,
        img_prefix=img_prefix,
        question_mode=question_mode,
        pipeline=train_pipeline))
# Global batch 128 = 8 GPUs x 4 x 4 accumulated steps; the lr is for that batch, not rescaled.
optim_wrapper = dict(accumulative_counts=accumulative_counts)
auto_scale_lr = dict(base_batch_size=8 * batch_size * accumulative_counts)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
# Warmup and cosine over the whole run: a recipe with other epochs restates this list (an
# mmengine config cannot compute it from a child's max_epochs; the tests check each one).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03 * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03 * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]

# tools/test.py and the validation after each epoch: greedy answers and the likelihood
# ranking of the label map's names (the test dataset gives them to the model as answer
# candidates and to the metric as its classes) on the val list.
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='ActionListDataset',
        data_root=data_root,
        ann_file=test_list,
        label_map=label_map,
        list_format=list_format,
        img_prefix=img_prefix,
        question_mode=question_mode,
        test_mode=True,
        pipeline=test_pipeline))
test_evaluator = dict(type='ActionAccuracy')
test_cfg = dict(type='TestLoop')
val_dataloader = test_dataloader
val_evaluator = test_evaluator
val_cfg = dict(type='ValLoop')
# A checkpoint (adapters + projector, and its .safetensors twin) each epoch; the last one and
# the best by validation top-1 (best_action_top1_epoch_N.safetensors) are kept.
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1,
                                     max_keep_ckpts=1, save_best='action/top1', rule='greater'))
custom_hooks = [
    dict(type='TrainableOnlyCheckpointHook'),
    # The first training and validation samples, tokenized, with their label masks.
    dict(type='DatasetInfoHook'),
    # Two validation clips answered every 50 iterations (12 optimizer steps).
    dict(type='EvaluateChatHook', every_n_iters=50, indices=(0, 1), max_new_tokens=16),
]
