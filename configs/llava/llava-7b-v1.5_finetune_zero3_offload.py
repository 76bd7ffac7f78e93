# The 7B finetune with DeepSpeed ZeRO-3 and CPU offload of parameters and optimizer states
# (haotian-liu/LLaVA scripts/zero3_offload.json): GPU memory for the bf16 working set and
# activations only, the fp32 master weights and AdamW states live in pinned host memory
# (~16 bytes a parameter: ~112 GB of host RAM for 7B, shared by the node's GPUs), and the
# optimizer step runs on the CPU (DeepSpeedCPUAdam). Slower; for GPUs where ZeRO-3 does not
# fit (see tools/analysis_tools/estimate_memory.py).
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_finetune_zero3_offload.py 8
# Mapping of scripts/zero3_offload.json: as llava-7b-v1.5_finetune_zero3.py, plus
# offload_optimizer / offload_param on the CPU with pinned memory; its "gradient_clipping":
# "auto" is HF Trainer's max_grad_norm 1.0, the clip_grad of the ZeRO-3 recipe.
# Its "optimizer" (AdamW, "auto") and "scheduler" (WarmupLR) sections are mmengine's here:
# DeepSpeedCPUAdamW with the recipe's AdamW settings, and the recipe's warmup + cosine.
_base_ = ['./llava-7b-v1.5_finetune_zero3.py']
strategy = dict(
    zero_optimization=dict(
        offload_optimizer=dict(device='cpu', pin_memory=True),
        offload_param=dict(device='cpu', pin_memory=True)))
optim_wrapper = dict(optimizer=dict(type='DeepSpeedCPUAdamW'))
