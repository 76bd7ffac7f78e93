# The 7B finetune sharded with FSDP through mmengine's FlexibleRunner (tools/train.py picks it
# when the config has a `strategy`): parameters, gradients and AdamW states are sharded over
# the GPUs (ZeRO-3-like), which a full 7B finetune needs on 8 x 80 GB (the authors used
# DeepSpeed ZeRO-3). bf16 mixed precision through FSDP's MixedPrecision.
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_finetune_fsdp.py 8
# DeepSpeed instead: strategy=dict(type='DeepSpeedStrategy', config=dict(zero_optimization=
# dict(stage=3), bf16=dict(enabled=True), ...)) with optim_wrapper type 'DeepSpeedOptimWrapper'.
# Note: with a strategy, `load_base` is not applied; give merged full weights through
# `load_from` (see configs/llava/README.md).
_base_ = ['./llava-7b-v1.5_finetune.py']
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.transformer_auto_wrap_policy',
            transformer_layer_cls={'LlamaDecoderLayer', 'CLIPEncoderLayer'}),
        use_orig_params=True,  # frozen and trainable parameters in one flat group
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                             buffer_dtype='bfloat16')),
    state_dict_cfg='full')
# FSDP's mixed precision replaces autocast.
optim_wrapper = dict(type='OptimWrapper')
load_from = None
