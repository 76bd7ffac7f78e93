# LLaVA-1.5-7B QLoRA on HMDB51 split 1 (51 classes, closed question), for one 24 GB GPU: the
# LoRA recipe llava-7b-v1.5_lora-8xb4-accum4-5e_hmdb51-split1-8f.py with the 4-bit LLM and
# the batch split of llava-7b-v1.5_qlora-1xb4-accum32-3e_ucf101-split1-8f.py (global batch
# 128 = 1 x 4 x 32; memory assumptions there). 5 epochs: 140 optimizer steps.
#   python tools/train.py \
#       configs/llava_action/llava-7b-v1.5_qlora-1xb4-accum32-5e_hmdb51-split1-8f.py
_base_ = ['./llava-7b-v1.5_lora-8xb4-accum4-5e_hmdb51-split1-8f.py']
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
