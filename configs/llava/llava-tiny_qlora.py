# Tiny LLaVA, QLoRA instruction tuning: the LoRA recipe of llava-tiny_lora.py on an LLM whose
# linear layers (lm_head excepted) become 4-bit NF4 after the weights load (bitsandbytes,
# double quantization, bf16 compute); vision tower frozen, projector trained. Needs
# bitsandbytes (pip install -e ".[qlora]"); its CPU backend (0.50.2) runs this on a CPU.
#   python tools/train.py configs/llava/llava-tiny_qlora.py --amp
_base_ = ['./llava-tiny_lora.py']
model = dict(llm=dict(
    torch_dtype='bfloat16', gradient_checkpointing=True,
    quantization_config=dict(load_in_4bit=True, bnb_4bit_quant_type='nf4',
                             bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype='bfloat16')))
optim_wrapper = dict(type='BF16OptimWrapper')
