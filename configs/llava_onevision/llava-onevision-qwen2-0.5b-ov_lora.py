# LLaVA-OneVision-Qwen2-0.5B-OV, LoRA finetuned on instructions in LLaVA JSON (images, several
# images and clips in one file: "image" and/or "video" per record), from the released model
# converted by tools/model_converters/llava_to_mmllava.py. The LoRA recipe of
# ../_base_/schedules/instruct_lora.py (LLaVA-1.5's: r 128, alpha 256 on the LLM's linears,
# never SigLIP's; lr 2e-4, projector and image_newline 2e-5; global batch 128; 1 epoch); the
# vision tower frozen. Images are tiled as the model reads them (anyres_max_9, several images
# padded), clips are 32 frames (one drawn at random in each of 32 segments), 196 tokens each;
# qwen_1_5, 8,192 tokens a sample, gradient checkpointing.
#   bash tools/dist_train.sh configs/llava_onevision/llava-onevision-qwen2-0.5b-ov_lora.py 8
# Measured at this shape on a 2-core CPU (3 steps, fp32): see README.md here.
_base_ = ['./llava-onevision-qwen2-0.5b-ov_vqa.py', '../_base_/schedules/instruct_lora.py']
load_base = 'checkpoints/llava-onevision-qwen2-0.5b-ov/model.safetensors'
tokenizer = 'checkpoints/llava-onevision-qwen2-0.5b-ov'
data_root = 'data/llava_onevision_sft'
max_length = 8192
num_frames = 32
num_image_tokens = 729  # SigLIP-so400m-384: 27 x 27
image_size = {{_base_.image_size}}
video_pooling = {{_base_.video_pooling}}
anyres = {{_base_.anyres}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora={{_base_.lora}})
train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=num_image_tokens,
         video_pooling=video_pooling, temporal_jitter=True),
    dict(type='AnyresTiles', multi_image='pad', background=(127, 127, 127), anyres=anyres),
    dict(type='ResizeSquare', size=image_size),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='qwen_1_5',
         max_length=max_length, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
default_hooks = dict(checkpoint={{_base_.checkpoint}})
