# LLaVA-NeXT-Video-7B, LoRA finetuned for action recognition on UCF101 split 1 (101 classes),
# from the released model converted by tools/model_converters/llava_to_mmllava.py. The LoRA
# recipe of the LLaVA-1.5 action recipes (r 128, alpha 256, dropout 0.05 on the LLM's linears,
# lr 2e-4, projector 2e-5, global batch 128, cosine with 3% warmup, 3 epochs, best-top-1
# checkpoint by validation), on this model's clips: 16 frames (a random one in each of 16
# segments for training, the midpoints for testing) at 336 px, each CLIP grid average-pooled
# 2x2 before the projector (144 tokens a frame, 2,304 a clip); vicuna_v1; the tower frozen.
#   bash tools/dist_train.sh \
#       configs/llava_action/llava-next-video-7b_lora-8xb4-accum4-3e_ucf101-split1-16f.py 8
_base_ = [
    '../llava_next/llava-next-video-7b_vqa.py',
    '../_base_/datasets/action_ucf101-split1.py',
    '../_base_/schedules/action_lora_3e.py',
]
# Converted by tools/model_converters/llava_to_mmllava.py (llava-hf or the original):
# model.safetensors and the tokenizer files in one folder.
load_base = 'checkpoints/llava-next-video-7b/model.safetensors'
tokenizer = 'checkpoints/llava-next-video-7b'
num_frames = 16
num_image_tokens = 576
video_pooling = {{_base_.video_pooling}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora=dict(r=128, alpha=256, dropout=0.05, target_modules=None))
train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, temporal_jitter=True, min_decoded_fraction=0.5),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         max_length=4096, truncate=True),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, min_decoded_fraction=0.5),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
batch_size = 4
accumulative_counts = 4
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(type='LengthGroupedSampler', batch_size=batch_size, group_by_modality=True),
    dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# Global batch 128 = 8 GPU(s) x 4 x 4 accumulated steps; the lr is for it.
optim_wrapper = dict(accumulative_counts=accumulative_counts)
auto_scale_lr = dict(base_batch_size=128)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1,
                                     max_keep_ckpts=1, save_best='action/top1', rule='greater'))
