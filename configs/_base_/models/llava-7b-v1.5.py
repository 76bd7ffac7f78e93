# LLaVA-1.5-7B: CLIP ViT-L/14-336 (select layer -2, patch tokens) + mlp2x_gelu + Vicuna-7B-v1.5.
# The whole architecture is declared here: building needs no hub.
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
        num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
        max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
        hidden_act='silu', tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        pad_token_id=0))
model = dict(
    type='Llava',
    vision_encoder=vision_encoder,
    projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
    llm=llm,
    # Zoo configs leave the tokenizer to the weights folder (tokenizer.model beside the
    # weights); get_model fills it in. A converted folder's config.py names it.
    tokenizer=None,
    data_preprocessor=dict(type='LlavaDataPreprocessor', pad_token_id=0),
    task='vqa',
    generation_cfg=dict(max_new_tokens=128, num_beams=1, do_sample=False))
