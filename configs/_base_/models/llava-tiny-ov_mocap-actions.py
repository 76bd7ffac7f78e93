# The tiny OneVision-style LLaVA of MoCap-Actions: what it changes in the default model
# (llava-tiny_mocap-actions.py), as pieces its two stage configs put in place (each dict that
# replaces a part of the default model carries _delete_, so nothing of CLIP or LLaMA is left):
# a SigLIP-style tower (no CLS token, every patch token of its last layer), a Qwen2-style LLM
# (biased q/k/v projections) of the default's sizes, and OneVision's clip pooling (each frame's
# 4 x 4 grid bilinearly halved to 2 x 2 after the projector) with one image_newline a clip.
ov_pooling = dict(type='BilinearFramePooling', newline=True)
ov_model = dict(
    vision_encoder=dict(
        _delete_=True,
        type='HFSiglipVisionEncoder',
        config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, image_size=64, patch_size=16,
                    hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6,
                    vision_use_head=False),
        select_layer=-1,
        select_feature='full'),
    llm=dict(config=dict(
        _delete_=True, model_type='qwen2', hidden_size=128, intermediate_size=384,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, vocab_size=480,
        max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act='silu',
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    video_pooling=dict(_delete_=True, type='BilinearFramePooling', newline=True))
