# LLaVA-1.5-7B LoRA on HMDB51 split 1 (51 classes, closed question): the UCF101 recipe on
# mmaction2's tools/data/hmdb51 layout ("brush_hair" is asked and answered as "brush hair").
# Epochs: 5. One epoch of the 3,570 training clips is 28 optimizer steps at batch 128; 5 give
# 140 (not measured here). See README.md here.
#   bash tools/dist_train.sh \
#       configs/llava_action/llava-7b-v1.5_lora-8xb4-accum4-5e_hmdb51-split1-8f.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py']
data_root = 'data/hmdb51'
label_map = 'label_map.txt'  # mmaction2's tools/data/hmdb51/label_map.txt
max_epochs = 5
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='hmdb51_train_split_1_videos.txt', label_map=label_map))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='hmdb51_val_split_1_videos.txt', label_map=label_map))
val_dataloader = test_dataloader
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03 * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03 * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
