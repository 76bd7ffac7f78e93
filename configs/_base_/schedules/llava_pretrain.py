# LLaVA-1.5 pretraining (feature alignment): AdamW lr 1e-3, no weight decay, 1 epoch, linear
# warmup over the first 3% then cosine to 0 (HF Trainer's cosine schedule), bf16 autocast.
# Batch: 8 GPUs x 32 x accumulative_counts 1 = 256 (set in the stage config).
optim_wrapper = dict(
    type='BF16OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.),
    constructor='LlavaOptimWrapperConstructor',
    accumulative_counts=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03, end=1,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
# The original multiplies nothing by the world size: lr is for the global batch as set.
auto_scale_lr = dict(enable=False, base_batch_size=256)
