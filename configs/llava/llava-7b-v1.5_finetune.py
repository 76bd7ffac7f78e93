# LLaVA-1.5-7B stage 2 (visual instruction tuning) as the authors ran it: llava_v1_5_mix665k,
# `vicuna_v1`, projector + LLM train (the vision tower stays frozen); lr 2e-5, global batch 128
# (8 GPUs x 16, no accumulation), 1 epoch, cosine with 3% warmup, no weight decay, images
# padded to square, batches grouped by modality and length, bf16, gradient checkpointing.
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_finetune.py 8
# A full 7B finetune needs sharding on 80 GB GPUs: see llava-7b-v1.5_finetune_fsdp.py.
_base_ = ['./llava-7b-v1.5_pretrain.py']
optim_wrapper = dict(optimizer=dict(lr=2e-5))
auto_scale_lr = dict(base_batch_size=128)
data_root = 'data/llava_v1_5_mix665k'
model = dict(freeze_vision_encoder=True, freeze_projector=False, freeze_llm=False)
# The base, then the stage-1 projector (the .safetensors twin of its last checkpoint).
load_base = ['checkpoints/clip-vit-large-patch14-336.safetensors',
             'checkpoints/vicuna-7b-v1.5.safetensors',
             'work_dirs/llava-7b-v1.5_pretrain/iter_2180.safetensors']
train_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer={{_base_.tokenizer}}, template='vicuna_v1',
         num_image_tokens=576, max_length=2048, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(
    batch_size=16,
    sampler=dict(_delete_=True, type='LengthGroupedSampler', batch_size=16,
                 group_by_modality=True),
    dataset=dict(
        data_root=data_root,
        ann_file='llava_v1_5_mix665k.json',
        img_prefix='',  # image paths in the JSON start with coco/, gqa/, ocr_vqa/ ...
        pipeline=train_pipeline))
