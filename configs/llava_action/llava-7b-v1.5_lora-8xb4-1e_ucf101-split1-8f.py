# LLaVA-1.5-7B, LoRA finetuned for action recognition on UCF101 split 1 (101 classes), from the
# released LLaVA-1.5-7B. The LoRA recipe of ../llava/llava-7b-v1.5_lora.py (r 128, alpha 256,
# dropout 0.05 on the LLM's linears; lr 2e-4, projector 2e-5; 1 epoch, cosine, 3% warmup,
# bf16, gradient checkpointing), on clips: 8 uniformly sampled frames, each frame's 24 x 24
# CLIP tokens pooled 2 x 2 (avgpool2x2: 144 tokens a frame, 1152 a clip), 8 GPUs x 4 clips.
# The question lists the 101 classes ("closed"); the answer is the class name.
#   bash tools/dist_train.sh configs/llava_action/llava-7b-v1.5_lora-8xb4-1e_ucf101-split1-8f.py 8
# Data (mmaction2's layout, tools/data/ucf101) and evaluation: see README.md here.
_base_ = ['../llava/llava-7b-v1.5_lora.py']

# LLaVA-1.5-7B converted by tools/model_converters/llava_to_mmllava.py (model.safetensors and
# tokenizer.model in one folder).
load_base = 'checkpoints/llava-7b-v1.5/model.safetensors'
tokenizer = 'checkpoints/llava-7b-v1.5/tokenizer.model'

data_root = 'data/ucf101'
label_map = 'label_map.txt'  # mmaction2's tools/data/ucf101/label_map.txt
list_format = 'videos'
img_prefix = 'videos'
train_list = 'ucf101_train_split_1_videos.txt'
test_list = 'ucf101_val_split_1_videos.txt'
question_mode = 'closed'
# The model ranks the label map's names by likelihood (top-1/top-5, pred_scores); the file is
# read on first use.
model = dict(tokenizer=tokenizer, video_pooling='avgpool2x2',
             class_names=f'{data_root}/{label_map}')
num_frames = 8
batch_size = 4

train_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, tokens_per_image=576,
         video_pooling='avgpool2x2'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         max_length=2048, truncate=True),
    dict(type='PackLlavaInputs'),
]
test_pipeline = [
    dict(type='LoadVisuals', num_frames=num_frames, tokens_per_image=576,
         video_pooling='avgpool2x2'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=336),
    dict(type='TokenizeConversation', tokenizer=tokenizer, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(_delete_=True, type='LengthGroupedSampler', batch_size=batch_size,
                 group_by_modality=True),
    dataset=dict(
        _delete_=True,
        type='ActionListDataset',
        data_root=data_root,
        ann_file=train_list,
        label_map=label_map,
        list_format=list_format,
        img_prefix=img_prefix,
        question_mode=question_mode,
        pipeline=train_pipeline))
# Global batch 32 = 8 GPUs x 4, no accumulation; the lr is for that batch, not rescaled.
optim_wrapper = dict(accumulative_counts=1)
auto_scale_lr = dict(base_batch_size=8 * batch_size)

# tools/test.py: greedy answers on the val list, scored against the label map.
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='ActionListDataset',
        data_root=data_root,
        ann_file=test_list,
        label_map=label_map,
        list_format=list_format,
        img_prefix=img_prefix,
        question_mode=question_mode,
        test_mode=True,
        pipeline=test_pipeline))
test_evaluator = dict(type='ActionAccuracy', classes=f'{data_root}/{label_map}')
test_cfg = dict(type='TestLoop')
