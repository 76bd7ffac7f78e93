# The 7B finetune as the authors ran it: DeepSpeed ZeRO-3 (haotian-liu/LLaVA
# scripts/v1_5/finetune.sh with --deepspeed scripts/zero3.json), through mmengine's
# DeepSpeedStrategy (tools/train.py picks the FlexibleRunner when the config has a
# `strategy`). Parameters, gradients and optimizer states are partitioned over the GPUs;
# bf16 weights and compute with fp32 master weights in the optimizer; gradient checkpointing
# on the LLM (model.llm.gradient_checkpointing, from the base). 8 GPUs x 16, no accumulation.
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_finetune_zero3.py 8
# Needs `pip install deepspeed` (on the GPU machine; mmllava does not require it).
#
# scripts/zero3.json, setting by setting:
#   bf16.enabled "auto" -> True (--bf16 True); fp16 "auto" -> off
#   train_micro_batch_size_per_gpu "auto" -> train_dataloader.batch_size (16)
#   gradient_accumulation_steps "auto" -> optim_wrapper.accumulative_counts (1)
#   train_batch_size "auto" -> DeepSpeed derives it (16 x 1 x world size = 128 on 8 GPUs)
#   zero_optimization: as below; the "auto" sizes are resolved from the LLM's hidden size h
#   (4096) as HF Trainer does: reduce_bucket_size h*h, stage3_prefetch_bucket_size 0.9*h*h,
#   stage3_param_persistence_threshold 10*h (mmllava.engine.strategies).
#   gradient_clipping: absent in zero3.json, so DeepSpeed's default 1.0 applied (HF Trainer's
#   max_grad_norm is 1.0 too): optim_wrapper.clip_grad=dict(max_norm=1.0) here, which becomes
#   DeepSpeed's gradient_clipping (without clip_grad, mmllava sets 0: no clipping).
# `load_base` (converted CLIP + Vicuna, then the stage-1 projector) is loaded into the whole
# model on each rank before deepspeed.initialize partitions it (LlavaFlexibleRunner), with the
# usual rules: unknown keys or wrong shapes are errors, what no file gave is reported. Each
# rank builds the full fp32 model in host memory first (~28 GB for 7B).
_base_ = ['./llava-7b-v1.5_finetune.py']
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    zero_optimization=dict(
        stage=3,
        overlap_comm=True,
        contiguous_gradients=True,
        sub_group_size=1e9,
        reduce_bucket_size='auto',
        stage3_prefetch_bucket_size='auto',
        stage3_param_persistence_threshold='auto',
        stage3_max_live_parameters=1e9,
        stage3_max_reuse_distance=1e9,
        stage3_gather_16bit_weights_on_model_save=True))
# DeepSpeed does bf16, accumulation and clipping: the wrapper only steps its engine. The
# optimizer (AdamW lr 2e-5, no weight decay), its parameter groups and accumulative_counts
# stay as in the base; accumulative_counts and clip_grad are handed to DeepSpeed.
optim_wrapper = dict(type='DeepSpeedOptimWrapper', clip_grad=dict(max_norm=1.0))
load_from = None
