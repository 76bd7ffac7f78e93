# LLaVA-Video-7B-Qwen2, LoRA finetuned on instructions in LLaVA JSON (clips, images): the
# recipe of llava-onevision-qwen2-7b-ov_lora.py (the tower frozen, LLaVA-1.5's LoRA training
# in ../_base_/schedules/instruct_lora.py) on this model's clips: 64 frames (a random one in
# each of 64 segments) of 196 tokens and a newline a row (14 x 14 + 14 = 210 tokens a frame,
# 13,440 a clip; see llava-video-7b-qwen2_vqa.py), 16,384 tokens a sample.
#   bash tools/dist_train.sh configs/llava_onevision/llava-video-7b-qwen2_lora.py 8
_base_ = ['./llava-video-7b-qwen2_vqa.py', '../_base_/schedules/instruct_lora.py']
load_base = 'checkpoints/llava-video-7b-qwen2/model.safetensors'
tokenizer = 'checkpoints/llava-video-7b-qwen2'
data_root = 'data/llava_video_sft'
num_frames = {{_base_.num_frames}}
image_size = {{_base_.image_size}}
video_pooling = {{_base_.video_pooling}}
anyres = {{_base_.anyres}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora={{_base_.lora}})
train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=729,
         video_pooling=video_pooling, temporal_jitter=True),
    dict(type='AnyresTiles', multi_image='pad', background=(127, 127, 127), anyres=anyres),
    dict(type='ResizeSquare', size=image_size),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='qwen_1_5',
         max_length=16384, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
default_hooks = dict(checkpoint={{_base_.checkpoint}})
