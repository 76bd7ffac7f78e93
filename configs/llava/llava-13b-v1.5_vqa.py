# LLaVA-1.5-13B for VQA: Vicuna-13B-v1.5 (hidden 5120, 40 layers, 40 heads, MLP 13824).
_base_ = ['./llava-7b-v1.5_vqa.py']
model = dict(
    llm=dict(config=dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                         num_attention_heads=40, num_key_value_heads=40)))
