# LLaVA-Video-7B-Qwen2: the OneVision-7B architecture trained on LLaVA-Video-178K, asked about
# clips of 64 frames. The clip pooling and newline are those of the LLaVA-NeXT repository's
# video path (bilinear halving after the projector, mm_newline_position); the converter
# writes them from the checkpoint's config.json (mm_spatial_pool_mode, mm_newline_position)
# into the converted folder's config.py, which is what the zoo name then builds from. This
# file assumes bilinear pooling with one newline per row of each frame ('grid').
_base_ = ['./llava-onevision-qwen2-7b-ov_vqa.py']
num_frames = 64
video_pooling = dict(type='BilinearFramePooling', newline='grid')
test_pipeline = [
    dict(type='LoadVisuals', num_frames=64),
    dict(type='AnyresTiles', multi_image='pad', background=(127, 127, 127)),
    dict(type='ResizeSquare', size=384),
    dict(type='TokenizeConversation', tokenizer=None, template='qwen_1_5',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
model = dict(video_pooling=video_pooling)
