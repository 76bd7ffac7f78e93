# LLaVA-OneVision-Qwen2-7B-OV, LoRA finetuned on instructions in LLaVA JSON: the recipe of
# llava-onevision-qwen2-0.5b-ov_lora.py (anyres_max_9 images, several images padded, clips of
# 32 frames at 196 tokens each, qwen_1_5, the tower frozen, LLaVA-1.5's LoRA training in
# ../_base_/schedules/instruct_lora.py) on the 7B model.
#   bash tools/dist_train.sh configs/llava_onevision/llava-onevision-qwen2-7b-ov_lora.py 8
_base_ = ['./llava-onevision-qwen2-7b-ov_vqa.py', '../_base_/schedules/instruct_lora.py']
load_base = 'checkpoints/llava-onevision-qwen2-7b-ov/model.safetensors'
tokenizer = 'checkpoints/llava-onevision-qwen2-7b-ov'
data_root = 'data/llava_onevision_sft'
max_length = 8192
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
         max_length=max_length, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
default_hooks = dict(checkpoint={{_base_.checkpoint}})
