# The 7B finetune with DeepSpeed ZeRO-2 (haotian-liu/LLaVA scripts/zero2.json, which the
# authors used for stage-1 pretraining, scripts/v1_5/pretrain.sh): gradients and optimizer
# states are partitioned over the GPUs, each GPU keeps the whole bf16 model (~14 GB for 7B).
# Faster than ZeRO-3 (no parameter gathering) where it fits; whether it does for a GPU:
#   python tools/analysis_tools/estimate_memory.py configs/llava/llava-7b-v1.5_finetune_zero2.py
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_finetune_zero2.py 8
# Mapping of scripts/zero2.json: as llava-7b-v1.5_finetune_zero3.py (bf16 on, micro batch =
# train_dataloader.batch_size, accumulation = optim_wrapper.accumulative_counts, clipping at
# DeepSpeed's default 1.0, reduce_bucket_size "auto" = h*h with the LLM hidden size h).
_base_ = ['./llava-7b-v1.5_finetune_zero3.py']
strategy = dict(
    zero_optimization=dict(
        _delete_=True,
        stage=2,
        overlap_comm=True,
        contiguous_gradients=True,
        sub_group_size=1e9,
        reduce_bucket_size='auto'))
