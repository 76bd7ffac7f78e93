# LLaVA-1.5-7B LoRA on Stanford40 (40 actions in still images, closed question): the LoRA
# recipe as LLaVA ran it on images, global batch 128 = 8 GPUs x 16, no accumulation. Lists
# `path label` made from the dataset's ImageSplits (see README.md here).
# Epochs: 5. One epoch of the 4,000 training images is 31 optimizer steps at batch 128; 5 give
# 156 (not measured here).
#   bash tools/dist_train.sh configs/llava_action/llava-7b-v1.5_lora-8xb16-5e_stanford40.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py']
data_root = 'data/stanford40'
label_map = 'label_map.txt'
batch_size = 16
max_epochs = 5
# The base pipelines as they are: an image is one frame, which LoadVisuals gives 576 tokens
# and the model never pools (as LLaVA-1.5); temporal jitter has nothing to do on one frame.
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(batch_size=batch_size),
    dataset=dict(data_root=data_root, ann_file='stanford40_train_list.txt', label_map=label_map,
                 list_format='images', img_prefix='JPEGImages'))
optim_wrapper = dict(accumulative_counts=1)
auto_scale_lr = dict(base_batch_size=8 * batch_size)
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='stanford40_test_list.txt', label_map=label_map,
    list_format='images', img_prefix='JPEGImages'))
val_dataloader = test_dataloader
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03 * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03 * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
