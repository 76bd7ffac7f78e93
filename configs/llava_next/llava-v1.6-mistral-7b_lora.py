# LLaVA-1.6-Mistral-7B, LoRA finetuned on instructions in LLaVA JSON: the recipe of
# llava-v1.6-vicuna-7b_lora.py (anyres images, the tower frozen, LLaVA-1.5's LoRA training)
# on this model's Mistral-7B-Instruct-v0.2 with the mistral_instruct template.
#   bash tools/dist_train.sh configs/llava_next/llava-v1.6-mistral-7b_lora.py 8
_base_ = ['./llava-v1.6-mistral-7b_vqa.py', '../_base_/schedules/instruct_lora.py']
load_base = 'checkpoints/llava-v1.6-mistral-7b/model.safetensors'
tokenizer = 'checkpoints/llava-v1.6-mistral-7b'
data_root = 'data/llava_next_sft'
anyres = {{_base_.anyres}}
model = dict(tokenizer=tokenizer, llm=dict(gradient_checkpointing=True),
             freeze_vision_encoder=True, freeze_projector=False, freeze_llm=True,
             lora={{_base_.lora}})
train_pipeline = [
    dict(type='LoadImages', num_image_tokens=576),
    dict(type='AnyresTiles', anyres=anyres),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='mistral_instruct',
         max_length=4096, truncate=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
default_hooks = dict(checkpoint={{_base_.checkpoint}})
