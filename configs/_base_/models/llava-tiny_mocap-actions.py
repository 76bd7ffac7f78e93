# The MoCap-Actions default model's architecture, tokenizer and clip settings (the stages in
# configs/llava_action/llava-tiny_mocap-actions*.py train it). A small CLIP ViT and a small
# LLaMA, both from scratch, sized to train in minutes on a 2-core CPU.
image_size = 64  # frames are rendered at 64 px and enter the tower whole (no zoom: a 1.5x
# centre crop cuts off the feet, the cue that tells walking from walking backward)
patch_size = 16
num_image_tokens = (image_size // patch_size)**2  # 16; avgpool2x2 leaves 4 per frame
num_frames = 8
video_pooling = 'avgpool2x2'
template = 'vicuna_v1'
max_length = 512
# The benchmark's label map (mmllava.datasets.mocap_actions.CLASS_NAMES), in label order.
class_names = ['walking', 'walking backward', 'running', 'jumping', 'punching', 'kicking',
               'doing a cartwheel', 'crawling', 'rolling', 'spinning', 'doing a spin kick',
               'doing a backflip', 'dancing', 'getting up', 'lying down']
# The closed-set question the benchmark's JSON asks (its MOCAP_ACTION_QUESTION).
question = 'What is the person doing? Answer with one of: ' + ', '.join(class_names) + '.'
tokenizer = dict(
    type='SentencePieceTokenizer',
    model_file='{{ fileDirname }}/../../../resources/llava-tiny_mocap-actions/tokenizer.model')

model = dict(
    type='Llava',
    vision_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, image_size=image_size, patch_size=patch_size,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5, projection_dim=128),
        select_layer=-1,  # a tower trained from scratch: use every layer
        select_feature='patch'),
    projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
    llm=dict(
        type='HFCausalLM',
        config=dict(model_type='llama', hidden_size=128, intermediate_size=384,
                    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                    vocab_size=480, max_position_embeddings=max_length, rms_norm_eps=1e-5,
                    rope_theta=10000.0, hidden_act='silu', tie_word_embeddings=False,
                    bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    tokenizer=tokenizer,
    # Channel 0 is a grey frame (CLIP's red mean and std), channels 1 and 2 its motion around
    # 128 (TemporalChannels 'differences'): a still pixel enters the tower as 0.
    data_preprocessor=dict(type='LlavaDataPreprocessor', pad_token_id=0,
                           mean=(0.48145466, 128 / 255, 128 / 255),
                           std=(0.26862954, 0.135, 0.135)),
    task='vqa',
    default_question=question,
    generation_cfg=dict(max_new_tokens=8, num_beams=1, do_sample=False),
    video_pooling=video_pooling,
    frame_position_scale=0.1,
    freeze_vision_encoder=False, freeze_projector=False, freeze_llm=False)

