# LLaVA-Video-7B-Qwen2 LoRA on Kinetics-400 (mmaction2's tools/data/kinetics
# layout, videos resized to short side 256). 400 class names do not fit in the prompt beside
# the clip, so the question is open ("What is the person doing?") and the model learns to
# answer the class name; the likelihood ranking still scores all 400 names. Epochs: 1
# (~1,875 optimizer steps at batch 128).
# Broken clips of a public K400 copy: skipped in training (counted, logged), misses in testing.
#   bash tools/dist_train.sh \
#       configs/llava_action/llava-video-7b-qwen2_lora-8xb4-accum4-1e_kinetics400-16f.py 8
_base_ = ['./llava-video-7b-qwen2_lora-8xb4-accum4-3e_ucf101-split1-16f.py']
data_root = 'data/kinetics400'
label_map = 'label_map_k400.txt'  # mmaction2's tools/data/kinetics/label_map_k400.txt
max_epochs = 1
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='kinetics400_train_list_videos.txt', label_map=label_map,
    img_prefix='videos_train', question_mode='open', skip_invalid=True))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='kinetics400_val_list_videos.txt', label_map=label_map,
    img_prefix='videos_val', question_mode='open'))
val_dataloader = test_dataloader
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=0.03 * max_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=True, begin=0.03 * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
