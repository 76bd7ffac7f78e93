# LLaVA-OneVision Qwen2-0.5B: OneVision's vision side (see llava-onevision-qwen2-7b.py) on
# Qwen2-0.5B-Instruct (896 wide, 24 layers, 14 heads, 2 KV heads, tied embeddings).
# Architecture of llava-hf/llava-onevision-qwen2-0.5b-ov-hf.
_base_ = ['./llava-onevision-qwen2-7b.py']
llm = dict(
    type='HFCausalLM',
    config=dict(
        model_type='qwen2', hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=152000,
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
        hidden_act='silu', tie_word_embeddings=True, bos_token_id=151643,
        eos_token_id=151645, pad_token_id=151643))
model = dict(llm=llm)
