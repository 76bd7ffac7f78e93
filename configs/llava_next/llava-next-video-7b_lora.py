# LLaVA-NeXT-Video-7B, LoRA finetuned on instructions in LLaVA JSON (images and clips: "image"
# and/or "video" per record), from the released model converted by
# tools/model_converters/llava_to_mmllava.py. The LoRA recipe of
# ../_base_/schedules/instruct_lora.py; the vision tower frozen; clips of 32 frames (a random
# one in each of 32 segments), each CLIP grid average-pooled 2x2 before the projector (144
# tokens a frame, 4,608 a clip), images tiled (anyres); vicuna_v1 over the 8,192 positions of
# the model's linear RoPE scaling; gradient checkpointing.
#   bash tools/dist_train.sh configs/llava_next/llava-next-video-7b_lora.py 8
_base_ = ['./llava-next-video-7b_vqa.py', '../_base_/schedules/instruct_lora.py']
load_base = 'checkpoints/llava-next-video-7b/model.safetensors'
tokenizer = 'checkpoints/llava-next-video-7b'
data_root = 'data/llava_next_video_sft'
anyres = {{_base_.anyres}}
num_frames = {{_base_.num_frames}}
video_pooling = {{_base_.video_pooling}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora={{_base_.lora}})
train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, num_image_tokens=576,
         video_pooling=video_pooling, temporal_jitter=True),
    dict(type='AnyresTiles', anyres=anyres),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         max_length=8192, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
default_hooks = dict(checkpoint={{_base_.checkpoint}})
