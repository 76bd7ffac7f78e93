# LLaVA-OneVision-Qwen2-0.5B-OV, LoRA finetuned on instructions in LLaVA JSON (images, several
# images and clips in one file: "image" and/or "video" per record). The LoRA recipe of
# ../llava/llava-7b-v1.5_lora.py: r 128, alpha 256, dropout 0.05 on the LLM's linears (never
# SigLIP's), lr 2e-4 and the projector (and image_newline) at 2e-5; the vision tower frozen;
# global batch 128 = 8 GPUs x 4 x 4 accumulated steps; cosine with 3% warmup, bf16, gradient
# checkpointing. Images are tiled as the model reads them (anyres_max_9, several images padded),
# clips are 32 frames (one drawn at random in each of 32 segments), 196 tokens each.
#   bash tools/dist_train.sh configs/llava_onevision/llava-onevision-qwen2-0.5b-ov_lora.py 8
# Measured at this shape on a 2-core CPU (3 steps, fp32): see README.md here.
_base_ = ['./llava-onevision-qwen2-0.5b-ov_vqa.py', '../_base_/schedules/llava_pretrain.py']

# Converted by tools/model_converters/llava_to_mmllava.py from llava-hf or the original.
load_base = 'checkpoints/llava-onevision-qwen2-0.5b-ov/model.safetensors'
tokenizer = 'checkpoints/llava-onevision-qwen2-0.5b-ov'
data_root = 'data/llava_onevision_sft'
ann_file = 'train.json'
max_length = 8192
num_frames = 32
num_image_tokens = 729  # SigLIP-so400m-384: 27 x 27
video_pooling = {{_base_.video_pooling}}
anyres = {{_base_.anyres}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora=dict(r=128, alpha=256, dropout=0.05, target_modules=None))
train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, temporal_jitter=True),
    dict(type='AnyresTiles', multi_image='pad', background=(127, 127, 127), anyres=anyres),
    dict(type='ResizeSquare', size=384),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='qwen_1_5',
         max_length=max_length, truncate=True),
    dict(type='PackLlavaInputs'),
]
batch_size = 4
accumulative_counts = 4
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='LengthGroupedSampler', batch_size=batch_size, group_by_modality=True),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='LlavaInstructDataset', data_root=data_root, ann_file=ann_file,
                 img_prefix='', pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(projector_lr=2e-5),
                     accumulative_counts=accumulative_counts)
auto_scale_lr = dict(base_batch_size=8 * batch_size * accumulative_counts)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2))
custom_hooks = [dict(type='TrainableOnlyCheckpointHook')]
log_processor = dict(by_epoch=True)
