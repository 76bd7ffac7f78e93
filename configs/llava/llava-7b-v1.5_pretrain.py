# LLaVA-1.5-7B stage 1 (feature alignment) as the authors ran it: LCS-558K captions, `plain`
# template, only the projector trains; lr 1e-3, global batch 256 (8 GPUs x 32, no
# accumulation), 1 epoch, cosine with 3% warmup, no weight decay, max length 2048, bf16.
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_pretrain.py 8
# Fewer GPUs: keep the global batch, e.g. 4 GPUs with
#   --cfg-options train_dataloader.batch_size=16 optim_wrapper.accumulative_counts=4
# Data and base weights: see configs/llava/README.md.
_base_ = [
    '../_base_/models/llava-7b-v1.5.py',
    '../_base_/schedules/llava_pretrain.py',
    '../_base_/default_runtime.py',
]
data_root = 'data/LLaVA-Pretrain'
max_length = 2048
num_image_tokens = 576
tokenizer = 'checkpoints/vicuna-7b-v1.5/tokenizer.model'
model = dict(
    tokenizer=tokenizer,
    llm=dict(gradient_checkpointing=True),
    freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True)
# The base: CLIP ViT-L/14-336 + Vicuna-7B-v1.5 in mmllava's layout (a random projector).
load_base = ['checkpoints/clip-vit-large-patch14-336.safetensors',
             'checkpoints/vicuna-7b-v1.5.safetensors']
train_pipeline = [
    dict(type='LoadImages'),
    # Pretraining does not pad to square (image_aspect_ratio 'square' in the original).
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='plain',
         num_image_tokens=num_image_tokens, max_length=max_length, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='llava_collate'),  # batches may mix image and text-only samples
    dataset=dict(
        type='LlavaInstructDataset',
        data_root=data_root,
        ann_file='blip_laion_cc_sbu_558k.json',
        img_prefix='images',
        pipeline=train_pipeline))
optim_wrapper = dict(accumulative_counts=1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2))
custom_hooks = [dict(type='TrainableOnlyCheckpointHook')]
log_processor = dict(by_epoch=True)
