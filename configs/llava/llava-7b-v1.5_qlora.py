# LLaVA-1.5-7B visual instruction tuning with QLoRA, as xtuner's
# llava_vicuna_7b_v15_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune.py runs it: the
# LLM's linear layers (lm_head excepted) in 4-bit NF4 with double quantization
# (bitsandbytes), LoRA r 512, alpha 256, dropout 0.05 on each of them; AdamW lr 2e-4 for the
# adapters and the projector alike, betas (0.9, 0.999), no weight decay, gradient clipping at
# 1.0, 1 epoch, linear warmup over 3% then cosine to 0, global batch 128 (8 GPUs x 16, no
# accumulation), llava_v1_5_mix665k at 2048 tokens (image tokens included: xtuner's
# 2048 - 576 text tokens).
# Where this differs from xtuner, and why: bf16 compute and autocast (xtuner: fp16 with loss
# scaling; bf16 needs none and is the project's contract); the vision tower stays frozen and
# float with no LoRA (xtuner adds r 64 adapters to CLIP; LLaVA-1.5 never trains CLIP).
# Weights: the finetune's load_base (CLIP and Vicuna-7B-v1.5 converted to mmllava's layout,
# then the stage-1 projector) loads into the float LLM, built in bf16 (13.5 GB); the runner
# then quantizes it to 4 bits (~3.9 GB) where it lies, and casts embeddings, norms and
# lm_head to fp32 (peft's prepare_model_for_kbit_training).
# Needs bitsandbytes and a CUDA GPU: pip install -e ".[qlora]".
#   bash tools/dist_train.sh configs/llava/llava-7b-v1.5_qlora.py 8
# r 512 makes 1.28 B trainable parameters (every linear of the 32 layers: 32 x 512 x
# (4 x 8192 + 3 x 15104)), whose fp32 weights, gradients and AdamW states alone take ~20 GB:
# this is an 8-GPU recipe; one 24 GB GPU takes the action recipes' r 128 (configs/llava_action,
# *_qlora-1xb*). On one larger GPU, keep the global batch at 128:
#   python tools/train.py configs/llava/llava-7b-v1.5_qlora.py --cfg-options \
#       train_dataloader.batch_size=4 train_dataloader.sampler.batch_size=4 \
#       optim_wrapper.accumulative_counts=32
# Memory per GPU, with and without that: tools/analysis_tools/estimate_memory.py.
# Checkpoints hold the adapters and the projector only; merge them into the float base with
#   python tools/model_converters/merge_lora.py configs/llava/llava-7b-v1.5_qlora.py \
#       work_dirs/llava-7b-v1.5_qlora/iter_5198.safetensors llava-7b-v1.5-qlora-merged.safetensors
_base_ = ['./llava-7b-v1.5_finetune.py']
model = dict(
    freeze_llm=True,
    llm=dict(
        torch_dtype='bfloat16', gradient_checkpointing=True,
        quantization_config=dict(load_in_4bit=True, bnb_4bit_quant_type='nf4',
                                 bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype='bfloat16')),
    lora=dict(r=512, alpha=256, dropout=0.05, target_modules=None))
optim_wrapper = dict(optimizer=dict(lr=2e-4), clip_grad=dict(max_norm=1.0))
