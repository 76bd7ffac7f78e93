# A tiny LLaVA with LLaVA-1.5's structure (CLIP ViT, select layer -2, mlp2x_gelu, LLaMA) that
# runs in a fraction of a second on a CPU: for the quick start, tests and toy training.
# Its tokenizer ships in resources/tiny-tokenizer (see the README there).
tokenizer = dict(type='SentencePieceTokenizer',
                 model_file='{{ fileDirname }}/../../../resources/tiny-tokenizer/tokenizer.model')
model = dict(
    type='Llava',
    vision_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                    num_attention_heads=4, image_size=56, patch_size=14, hidden_act='quick_gelu',
                    layer_norm_eps=1e-5, projection_dim=64),
        select_layer=-2,
        select_feature='patch'),
    projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
    llm=dict(
        type='HFCausalLM',
        config=dict(model_type='llama', hidden_size=128, intermediate_size=352,
                    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                    vocab_size=1024, max_position_embeddings=512, rms_norm_eps=1e-5,
                    rope_theta=10000.0, hidden_act='silu', tie_word_embeddings=False,
                    bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    tokenizer=tokenizer,
    data_preprocessor=dict(type='LlavaDataPreprocessor', pad_token_id=0),
    task='vqa',
    default_question='What is the person doing?',
    generation_cfg=dict(max_new_tokens=16, num_beams=1, do_sample=False))
