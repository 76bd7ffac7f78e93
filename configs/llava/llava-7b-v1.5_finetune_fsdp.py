# The 7B finetune sharded with FSDP through mmengine's FlexibleRunner (tools/train.py picks it
# when the config has a `strategy`): parameters, gradients and AdamW states are sharded over
# the GPUs (FULL_SHARD, ZeRO-3-like; 'SHARD_GRAD_OP' keeps whole parameters on each GPU and
# shards gradients and optimizer states, ZeRO-2-like), which a full 7B finetune needs on
# 8 x 80 GB. bf16 mixed precision through FSDP's MixedPrecision; one FSDP unit per LLaMA
# decoder layer and CLIP encoder layer.
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_finetune_fsdp.py 8
# `load_base` (the converted CLIP + Vicuna, then the stage-1 projector) is loaded into the whole
# model on every rank before FSDP shards it (LlavaFlexibleRunner), with the same rules as
# without a strategy: unknown keys and wrong shapes are errors, what no file gave is reported.
# Each rank holds the full fp32 model in host memory while it loads (~28 GB for 7B).
# The authors ran DeepSpeed ZeRO-3 instead: llava-7b-v1.5_finetune_zero3.py.
_base_ = ['./llava-7b-v1.5_finetune.py']
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        sharding_strategy='FULL_SHARD',
        auto_wrap_policy=dict(
            type='mmllava.engine.strategies.layer_name_wrap_policy',
            layer_names=['LlamaDecoderLayer', 'CLIPEncoderLayer']),
        use_orig_params=True,  # frozen and trainable parameters in one flat group
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                             buffer_dtype='bfloat16')),
    state_dict_cfg='full')
# FSDP's mixed precision replaces autocast.
optim_wrapper = dict(type='OptimWrapper')
load_from = None
