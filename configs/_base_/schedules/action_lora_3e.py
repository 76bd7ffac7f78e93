# The action LoRA schedule of the NeXT-family recipes (configs/llava_action/llava-{video,
# next-video,onevision}-*): the LLaVA-1.5 recipes' LoRA training (AdamW, lr 2e-4 for the
# adapters and 2e-5 for the projector, no weight decay, bf16), 3 epochs with 3% linear warmup
# then cosine to 0, validation each epoch, and the hooks every action recipe runs. The global
# batch (batch x GPUs x accumulative_counts) and auto_scale_lr are the recipe's.
max_epochs = 3
optim_wrapper = dict(
    type='BF16OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.),
    constructor='LlavaOptimWrapperConstructor',
    paramwise_cfg=dict(projector_lr=2e-5))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03 * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03 * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='TrainableOnlyCheckpointHook'),
    # The first training and validation samples, tokenized, with their label masks.
    dict(type='DatasetInfoHook'),
    # Two validation clips answered every 50 iterations.
    dict(type='EvaluateChatHook', every_n_iters=50, indices=(0, 1), max_new_tokens=16),
]
# The lr is for the recipe's global batch as set, not rescaled by the world size.
auto_scale_lr = dict(enable=False)
