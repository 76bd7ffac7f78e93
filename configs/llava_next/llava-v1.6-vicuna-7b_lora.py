# LLaVA-1.6-Vicuna-7B, LoRA finetuned on instructions in LLaVA JSON, from the released model
# converted by tools/model_converters/llava_to_mmllava.py (llava-hf or the original). The
# LoRA recipe of ../_base_/schedules/instruct_lora.py (LLaVA-1.5's: r 128, alpha 256, lr 2e-4,
# projector and image_newline 2e-5, global batch 128, 1 epoch); the vision tower frozen; images
# tiled as the model reads them (anyres: base view + up to 2x2 / 1x3 / 3x1 tiles of 336 px,
# up to 2,928 tokens an image), vicuna_v1, 4,096 tokens a sample, gradient checkpointing.
#   bash tools/dist_train.sh configs/llava_next/llava-v1.6-vicuna-7b_lora.py 8
_base_ = ['./llava-v1.6-vicuna-7b_vqa.py', '../_base_/schedules/instruct_lora.py']
load_base = 'checkpoints/llava-v1.6-vicuna-7b/model.safetensors'
tokenizer = 'checkpoints/llava-v1.6-vicuna-7b'
data_root = 'data/llava_next_sft'
anyres = {{_base_.anyres}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora={{_base_.lora}})
train_pipeline = [
    dict(type='LoadImages', num_image_tokens=576),
    dict(type='AnyresTiles', anyres=anyres),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         max_length=4096, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
default_hooks = dict(checkpoint={{_base_.checkpoint}})
