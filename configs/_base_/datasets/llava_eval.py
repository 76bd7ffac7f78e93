# What every benchmark evaluation shares: LLaVA-1.5's inference pipeline (llava_inference.py),
# batched generation in order, and mmengine's test loop. A benchmark's base file sets the
# dataset type, its files and the evaluator.
_base_ = ['./llava_inference.py']
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(test_mode=True, pipeline={{_base_.test_pipeline}}))
test_cfg = dict(type='TestLoop')
