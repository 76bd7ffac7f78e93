# LLaVA-NeXT-Video-7B: LLaVA-1.6-Vicuna-7B's architecture (anyres images) whose clips are 32
# frames, each 24x24 tower grid average-pooled 2x2 to 144 tokens before the projector
# (transformers' LlavaNextVideoPooler; 4,608 tokens a clip). Its Vicuna reads 8k positions
# through a linear RoPE scaling of 2. Architecture of llava-hf/LLaVA-NeXT-Video-7B-hf.
_base_ = ['./llava-v1.6-vicuna-7b.py']
num_frames = 32
video_pooling = dict(type='AvgPool2x2FramePooling', stage='vision')
llm = dict(
    type='HFCausalLM',
    config=dict(
        model_type='llama', hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
        max_position_embeddings=4096, rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type='linear', factor=2.0, rope_theta=10000.0),
        hidden_act='silu', tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0))
model = dict(llm=llm, video_pooling=video_pooling)
