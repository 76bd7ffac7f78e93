# LLaVA-1.5-7B QLoRA on Stanford40 (40 actions in still images, closed question), for one
# 24 GB GPU: the LoRA recipe llava-7b-v1.5_lora-8xb16-5e_stanford40.py with the 4-bit LLM of
# llava-7b-v1.5_qlora-1xb4-accum32-3e_ucf101-split1-8f.py (memory assumptions there). Global
# batch 128 = 1 GPU x 8 images x 16 accumulated steps: half the LoRA recipe's 16 a GPU, since
# one 24 GB GPU holds the activations of fewer sequences (576 image tokens + the prompt each)
# than an 80 GB one; the estimator's table says whether 16 would fit too.
#   python tools/train.py configs/llava_action/llava-7b-v1.5_qlora-1xb8-accum16-5e_stanford40.py
_base_ = ['./llava-7b-v1.5_lora-8xb16-5e_stanford40.py']
model = dict(llm=dict(
    torch_dtype='bfloat16', gradient_checkpointing=True,
    quantization_config=dict(load_in_4bit=True, bnb_4bit_quant_type='nf4',
                             bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype='bfloat16')))
gpus = 1
batch_size = 8
accumulative_counts = 16
train_dataloader = dict(batch_size=batch_size, sampler=dict(batch_size=batch_size))
optim_wrapper = dict(accumulative_counts=accumulative_counts)
auto_scale_lr = dict(base_batch_size=gpus * batch_size * accumulative_counts)
