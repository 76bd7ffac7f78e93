# LLaVA-1.6 (LLaVA-NeXT) Vicuna-7B: CLIP ViT-L/14-336 (layer -2, patch tokens) + mlp2x_gelu +
# Vicuna-7B-v1.5, anyres images (base view + up to 2x2 / 1x3 / 3x1 tiles of 336 px, unpadded,
# an image_newline a row). Architecture of llava-hf/llava-v1.6-vicuna-7b-hf (vocab 32064: the
# 32000 of LLaMA, <image> and <pad>, padded to 64); a converted folder's config.py is written
# from its own config.json and weights.
image_size = 336
anyres = dict(
    image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    tile_size=336, patches_per_side=24)
vision_encoder = dict(
    type='HFCLIPVisionEncoder',
    config=dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, hidden_act='quick_gelu', layer_norm_eps=1e-5,
        projection_dim=768),
    select_layer=-2,
    select_feature='patch')
llm = dict(
    type='HFCausalLM',
    config=dict(
        model_type='llama', hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
        max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
        hidden_act='silu', tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0))
model = dict(
    type='Llava',
    vision_encoder=vision_encoder,
    projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
    llm=llm,
    tokenizer=None,
    anyres=anyres,
    data_preprocessor=dict(type='LlavaDataPreprocessor', pad_token_id=0),
    task='vqa',
    generation_cfg=dict(max_new_tokens=128, num_beams=1, do_sample=False))
