# LLaVA-OneVision Qwen2-7B: SigLIP-so400m-384 (its last layer removed: 26 layers, every patch
# token, 27x27 = 729 a tile) + mlp2x_gelu + Qwen2-7B-Instruct; anyres_max_9 images over the
# 1x1..6x6 grids of 384 px tiles; clips of 32 frames, each grid resized bilinearly to 14x14 =
# 196 tokens, one image_newline a clip. Architecture of llava-hf/llava-onevision-qwen2-7b-ov-hf.
image_size = 384
num_frames = 32
anyres = dict(
    image_grid_pinpoints=[[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)],
    tile_size=384, patches_per_side=27, max_num_tiles=9)
video_pooling = dict(type='BilinearFramePooling', newline=True)
vision_encoder = dict(
    type='HFSiglipVisionEncoder',
    config=dict(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
        image_size=384, patch_size=14, hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6,
        vision_use_head=False),
    select_layer=-1,
    select_feature='full')
llm = dict(
    type='HFCausalLM',
    config=dict(
        model_type='qwen2', hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, vocab_size=152128,
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
        hidden_act='silu', tie_word_embeddings=False, bos_token_id=151643,
        eos_token_id=151645, pad_token_id=151643))
model = dict(
    type='Llava',
    vision_encoder=vision_encoder,
    projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
    llm=llm,
    tokenizer=None,
    anyres=anyres,
    video_pooling=video_pooling,
    # SigLIP's normalization: mean = std = 0.5.
    data_preprocessor=dict(type='LlavaDataPreprocessor', mean=[0.5, 0.5, 0.5],
                           std=[0.5, 0.5, 0.5], pad_token_id=151643),
    task='vqa',
    generation_cfg=dict(max_new_tokens=128, num_beams=1, do_sample=False))
