# LLaVA-1.6 (LLaVA-NeXT) Mistral-7B: LLaVA-1.6's vision side (see llava-v1.6-vicuna-7b.py) on
# Mistral-7B-Instruct-v0.2 (grouped-query attention, 8 KV heads, RoPE theta 1e6, 32k context).
# Architecture of llava-hf/llava-v1.6-mistral-7b-hf (vocab 32064).
_base_ = ['./llava-v1.6-vicuna-7b.py']
llm = dict(
    type='HFCausalLM',
    config=dict(
        model_type='mistral', hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=32064,
        max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=1000000.0,
        hidden_act='silu', tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0, sliding_window=None))
model = dict(llm=llm)
