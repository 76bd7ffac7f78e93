# LLaVA-1.5-7B LoRA on Stanford40 (40 actions in still images, closed question): the LoRA
# recipe as LLaVA ran it on images, global batch 128 = 8 GPUs x 16. Lists `path label` made
# from the dataset's ImageSplits (see README.md here).
#   bash tools/dist_train.sh configs/llava_action/llava-7b-v1.5_lora-8xb16-1e_stanford40.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-1e_ucf101-split1-8f.py']
data_root = 'data/stanford40'
label_map = 'label_map.txt'
tokenizer = {{_base_.tokenizer}}
batch_size = 16
# An image is one frame: LoadVisuals gives it 576 tokens, as LLaVA-1.5.
train_pipeline = [
    dict(type='LoadVisuals', tokens_per_image=576),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         max_length=2048, truncate=True),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', tokens_per_image=576),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(batch_size=batch_size),
    dataset=dict(data_root=data_root, ann_file='stanford40_train_list.txt', label_map=label_map,
                 list_format='images', img_prefix='JPEGImages', pipeline=train_pipeline))
auto_scale_lr = dict(base_batch_size=8 * batch_size)
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='stanford40_test_list.txt', label_map=label_map,
    list_format='images', img_prefix='JPEGImages', pipeline=test_pipeline))
# The model ranks the label map's names by likelihood: top-1/top-5 and pred_scores.
model = dict(class_names=f'{data_root}/{label_map}')
test_evaluator = dict(classes=f'{data_root}/{label_map}')
