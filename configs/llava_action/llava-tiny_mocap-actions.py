# The default model: a tiny LLaVA trained by us on MoCap-Actions (clips of a rendered humanoid,
# 15 actions, two of them time-reversed pairs), start to finish on a 2-core CPU.
#
#   # 1. render the benchmark (train/val/test; test azimuths are held out of training)
#   python tools/dataset_converters/render_mocap_actions.py --out data/mocap_actions --seed 0 \
#       --clips-per-class 1000 --no-videos
#   # 2. its own tokenizer, trained on the benchmark's text and the template's prompt
#   python tools/misc/train_tokenizer.py --out resources/llava-tiny_mocap-actions \
#       --vocab-size 480 --no-chatml-tokens --llava-json data/mocap_actions/train_llava.json
#   # 3. train in two stages, then test on a test split rendered with an unseen seed (below)
#   python tools/train.py configs/llava_action/llava-tiny_mocap-actions_pretrain.py
#   python tools/train.py configs/llava_action/llava-tiny_mocap-actions.py
#
# Stages, as LLaVA's: 1 (llava-tiny_mocap-actions_pretrain.py) on the `plain` template (the
# clip's tokens, then the class name), 2 (this file) on vicuna_v1 with the closed-set question,
# loss on the answer and its </s>. Unlike LLaVA, every part trains in both stages: nothing here
# is pretrained (a small CLIP ViT and a small LLaMA from scratch). 18.7 minutes of training in
# all on a 2-core CPU (measured 2026-12-01); the results are in metafile.yml and the README.
_base_ = ['../_base_/schedules/llava_tiny.py']

data_root = 'data/mocap_actions'
image_size = 64  # frames are rendered at 64 px and enter the tower whole (no zoom: a 1.5x
# centre crop cuts off the feet, the cue that tells walking from walking backward)
patch_size = 16
tokens_per_image = (image_size // patch_size)**2  # 16; avgpool2x2 leaves 4 per frame
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
    model_file='{{ fileDirname }}/../../resources/llava-tiny_mocap-actions/tokenizer.model')

model = dict(
    type='LLaVA',
    vision_encoder=dict(
        type='HFCLIPVisionEncoder',
        config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, image_size=image_size, patch_size=patch_size,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5, projection_dim=128),
        select_layer=-1,  # a tower trained from scratch: use every layer
        select_feature='patch'),
    projector=dict(type='LLaVAProjector', projector_type='mlp2x_gelu'),
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
    class_names=class_names,
    answer_template=template,
    video_pooling=video_pooling,
    frame_position_scale=0.1,
    freeze_vision_encoder=False, freeze_projector=False, freeze_llm=False)

train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, tokens_per_image=tokens_per_image,
         video_pooling=video_pooling),
    dict(type='CLIPResizeCrop', size=image_size),
    dict(type='SubtractBackground'),  # grey silhouettes: see the transform
    dict(type='TemporalChannels', mode='differences'),  # frame t and its signed motion
    dict(type='TokenizeConversation', tokenizer=tokenizer, template=template,
         max_length=max_length),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, tokens_per_image=tokens_per_image,
         video_pooling=video_pooling),
    dict(type='CLIPResizeCrop', size=image_size),
    dict(type='SubtractBackground'),  # grey silhouettes: see the transform
    dict(type='TemporalChannels', mode='differences'),  # frame t and its signed motion
    dict(type='TokenizeConversation', tokenizer=None, template=template,
         add_generation_prompt=True, max_length=max_length),
    dict(type='PackLlavaInputs'),
]

# Walking / walking backward, the hard pair (one motion, time-reversed, from any side: only
# the facing and the swing foot tell them apart), is drawn five times as often as the other
# classes: the whole list, then the pair's clips `hard_pair_repeats` times more.
hard_pair = ['walking', 'walking backward']
hard_pair_repeats = 4
# Rawframes, read from the mmaction2 list: loading 8 JPEGs costs a tenth of decoding an mp4
# clip, and on 2 cores data loading competes with training for the CPU. The samples
# equal train_llava.json's (the same closed-set question and answer).
train_list = dict(type='ActionListDataset', data_root=data_root,
                  ann_file='train_list_rawframes.txt', label_map=class_names,
                  list_format='rawframes', img_prefix='rawframes', question_mode='closed',
                  pipeline=train_pipeline)
batch_size = 16
train_dataloader = dict(
    batch_size=batch_size,
    # In the training process: on 2 cores a worker process slows the 2-thread training step
    # more than it saves (stage 1, back-to-back 80-iteration probes: 0.42 s/iteration without
    # it, 0.49 s with one).
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='ConcatDataset', datasets=[
        train_list,
        dict(type='RepeatDataset', times=hard_pair_repeats,
             dataset=dict(train_list, filter_cfg=dict(classes=hard_pair)))]))

# Stage 2 starts from stage 1's weights (every parameter: nothing was frozen). A checkpoint
# that holds every parameter loads without its load_base, so the shipped weights need none.
load_base = 'work_dirs/llava-tiny_mocap-actions_pretrain/iter_2000.safetensors'
max_iters = 250
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.01), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
log_processor = dict(by_epoch=False, window_size=20)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False, max_keep_ckpts=1))
randomness = dict(seed=0)

# tools/test.py: the test split (held-out camera azimuths); render it with an unseen seed:
#   python tools/dataset_converters/render_mocap_actions.py --out data/mocap_actions_seed1 \
#       --seed 1 --clips-per-class 40 --no-rawframes
#   python tools/test.py configs/llava_action/llava-tiny_mocap-actions.py \
#       resources/llava-tiny_mocap-actions/model.safetensors \
#       --cfg-options test_dataloader.dataset.data_root=data/mocap_actions_seed1
# Frame-order probe: add test_dataloader.dataset.pipeline.0.frame_order=shuffled (or reversed).
test_data_root = 'data/mocap_actions_seed1'
test_dataloader = dict(
    batch_size=16,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    # The mmaction2 list and label map: the true labels come with the samples.
    dataset=dict(type='ActionListDataset', data_root=test_data_root,
                 ann_file='test_list_videos.txt', label_map='label_map.txt',
                 list_format='videos', img_prefix='videos', question_mode='closed',
                 test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(type='ActionAccuracy', classes=class_names, topk=(1, 5), per_class=True,
                      pairs=[('walking', 'walking backward'), ('getting up', 'lying down')])
test_cfg = dict(type='TestLoop')
