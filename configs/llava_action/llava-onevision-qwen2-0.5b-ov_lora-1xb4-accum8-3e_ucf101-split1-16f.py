# LLaVA-OneVision-Qwen2-0.5B-OV, LoRA finetuned for action recognition on UCF101 split 1, sized
# for one 24 GB GPU: batch 4 clips x 8 accumulated steps (global 32, lr 2e-4 for it), 16
# frames at 384 px (196 tokens each and one newline: 3,137 a clip), bf16, gradient
# checkpointing; LoRA r 128 on the LLM's linears, the projector at 2e-5, SigLIP frozen.
# Memory at this shape, measured on a CPU in fp32 (3 steps of the 0.5B LoRA recipe): see
# configs/llava_onevision/README.md.
#   python tools/train.py \
#       configs/llava_action/llava-onevision-qwen2-0.5b-ov_lora-1xb4-accum8-3e_ucf101-split1-16f.py
_base_ = [
    '../llava_onevision/llava-onevision-qwen2-0.5b-ov_vqa.py',
    '../_base_/datasets/action_ucf101-split1.py',
    '../_base_/schedules/action_lora_3e.py',
]
# Converted by tools/model_converters/llava_to_mmllava.py (llava-hf or the original):
# model.safetensors and the tokenizer files in one folder.
load_base = 'checkpoints/llava-onevision-qwen2-0.5b-ov/model.safetensors'
tokenizer = 'checkpoints/llava-onevision-qwen2-0.5b-ov'
num_frames = 16
num_image_tokens = 729
video_pooling = {{_base_.video_pooling}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora=dict(r=128, alpha=256, dropout=0.05, target_modules=None))
train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, temporal_jitter=True, min_decoded_fraction=0.5),
    dict(type='ResizeSquare', size=384),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='qwen_1_5',
         max_length=8192, truncate=True),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, min_decoded_fraction=0.5),
    dict(type='ResizeSquare', size=384),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='qwen_1_5',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
batch_size = 4
accumulative_counts = 8
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(type='LengthGroupedSampler', batch_size=batch_size, group_by_modality=True),
    dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# Global batch 32 = 1 GPU(s) x 4 x 8 accumulated steps; the lr is for it.
optim_wrapper = dict(accumulative_counts=accumulative_counts)
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=1,
                                     max_keep_ckpts=1, save_best='action/top1', rule='greater'))
