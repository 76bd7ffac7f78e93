# LLaVA-1.5-7B QLoRA on UCF101 split 1, for one 24 GB GPU: the LoRA recipe of
# llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py (r 128, alpha 256, dropout 0.05;
# lr 2e-4, projector 2e-5; cosine with 3% warmup; 3 epochs; 8 frames pooled 2 x 2) on an LLM
# whose linear layers (lm_head excepted) are 4-bit NF4 with double quantization and bf16
# compute (bitsandbytes; ../llava/llava-7b-v1.5_qlora.py says how and when). Only the split
# of the global batch changes: 128 = 1 GPU x 4 clips x 32 accumulated steps, the LoRA
# recipes' batch and lr, so the two runs are comparable step for step.
# Memory assumed (the estimator counts it: tools/analysis_tools/estimate_memory.py CONFIG
# --gpus 1 --gpu-mem 24, and the table in README.md here): the float LLM built in bf16
# (13.5 GB) until the weights load and are quantized, before training; in training 4-bit
# linears (~3.9 GB), fp32 embeddings, norms and lm_head, the fp32 CLIP tower (frozen), fp32
# adapters and projector with their gradients and AdamW states, and the activations of 4
# clips (1152 clip tokens + a prompt of up to 2048 in all) with gradient checkpointing, the
# LM head on labelled positions only.
# Needs bitsandbytes and a CUDA GPU: pip install -e ".[qlora]".
#   python tools/train.py \
#       configs/llava_action/llava-7b-v1.5_qlora-1xb4-accum32-3e_ucf101-split1-8f.py
# Merge the adapters into the float base: merge_lora.py with this config (see README.md here).
_base_ = ['./llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py']
model = dict(llm=dict(
    torch_dtype='bfloat16', gradient_checkpointing=True,
    quantization_config=dict(load_in_4bit=True, bnb_4bit_quant_type='nf4',
                             bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype='bfloat16')))
gpus = 1
batch_size = 4
accumulative_counts = 32
train_dataloader = dict(batch_size=batch_size, sampler=dict(batch_size=batch_size))
optim_wrapper = dict(accumulative_counts=accumulative_counts)
auto_scale_lr = dict(base_batch_size=gpus * batch_size * accumulative_counts)
