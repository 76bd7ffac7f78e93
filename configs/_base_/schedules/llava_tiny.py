# The tiny recipes: iteration-based so that checkpoints and logs come every few iterations;
# fp32 (add --amp for bf16 autocast); warmup then cosine, as the 7B recipes. It carries the
# runtime too (hooks and logging by iteration), so stage configs list it instead of
# default_runtime.py.
_base_ = ['../default_runtime.py']
max_iters = 60
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.),
    constructor='LlavaOptimWrapperConstructor',
    accumulative_counts=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False, begin=2, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
log_processor = dict(by_epoch=False, window_size=1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=20, by_epoch=False, max_keep_ckpts=2))
custom_hooks = [dict(type='TrainableOnlyCheckpointHook')]
