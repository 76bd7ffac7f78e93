# LLaVA-Video-7B-Qwen2 LoRA on Something-Something-v2 (174 classes; mmaction2's
# tools/data/sthv2 layout, .webm videos decoded by PyAV). The class names are long templates:
# the question is open and the answer is the class name. Frame order matters here (left to
# right versus right to left): the frames keep their order, jittered within their segments.
# Epochs: 1.
#   bash tools/dist_train.sh \
#       configs/llava_action/llava-video-7b-qwen2_lora-8xb4-accum4-1e_sthv2-16f.py 8
_base_ = ['./llava-video-7b-qwen2_lora-8xb4-accum4-3e_ucf101-split1-16f.py']
data_root = 'data/sthv2'
label_map = 'label_map.txt'  # mmaction2's tools/data/sthv2/label_map.txt
max_epochs = 1
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='sthv2_train_list_videos.txt', label_map=label_map,
    question_mode='open'))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='sthv2_val_list_videos.txt', label_map=label_map,
    question_mode='open'))
val_dataloader = test_dataloader
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03 * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03 * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
