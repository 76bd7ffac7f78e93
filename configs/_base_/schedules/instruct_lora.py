# LoRA visual instruction tuning of the LLaVA-NeXT family (configs/llava_next/*_lora.py,
# configs/llava_onevision/*_lora.py): the LLaVA-1.5 authors' LoRA recipe
# (configs/llava/llava-7b-v1.5_lora.py) on a model converted by
# tools/model_converters/llava_to_mmllava.py. The recipe gives the model (tokenizer, LoRA,
# freezing), the training pipeline and data_root; this file the rest:
# - LoRA r 128, alpha 256, dropout 0.05 on every linear of the LLM (never the tower's);
# - AdamW, lr 2e-4 for the adapters and 2e-5 for the projector (and image_newline), no weight
#   decay, bf16; 1 epoch, linear warmup over the first 3% then cosine to 0;
# - global batch 128 = 8 GPUs x 4 x 4 accumulated steps, batches grouped by modality and
#   length (LLaVA's group_by_modality_length);
# - instructions in LLaVA JSON (images, several images and clips in one file: "image" and/or
#   "video" per record) in <data_root>/train.json;
# - checkpoints that hold the trainable parameters only (merge_lora.py merges them).
batch_size = 4
accumulative_counts = 4
lora = dict(r=128, alpha=256, dropout=0.05, target_modules=None)
optim_wrapper = dict(
    type='BF16OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.),
    constructor='LlavaOptimWrapperConstructor',
    paramwise_cfg=dict(projector_lr=2e-5),
    accumulative_counts=accumulative_counts)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03, end=1,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
# The lr is for the global batch as set, not rescaled by the world size.
auto_scale_lr = dict(enable=False, base_batch_size=8 * batch_size * accumulative_counts)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='LengthGroupedSampler', batch_size=batch_size, group_by_modality=True),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='LlavaInstructDataset', data_root='data/llava_next_sft',
                 ann_file='train.json', img_prefix='', pipeline=[]))
# Every 1,000 iterations, the last two kept (default_hooks=dict(checkpoint=checkpoint) in the
# recipe: default_runtime.py holds default_hooks).
checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2)
custom_hooks = [
    dict(type='TrainableOnlyCheckpointHook'),
    # The first training sample, tokenized, with its label mask.
    dict(type='DatasetInfoHook', splits=('train',)),
]
