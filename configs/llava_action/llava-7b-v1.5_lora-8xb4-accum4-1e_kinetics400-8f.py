# LLaVA-1.5-7B LoRA on Kinetics-400 (mmaction2's tools/data/kinetics layout, videos resized to
# short side 256 as mmaction2 recommends). 400 class names do not fit in a 2048-token prompt
# beside 1152 clip tokens, so the question is open ("What is the person doing?") and the model
# learns to answer with the class name; the likelihood ranking still scores all 400 names.
# Epochs: 1. One epoch of ~240k training clips is ~1,875 optimizer steps at batch 128, the
# authors' one pass; validation on the ~20k val clips runs once, at its end.
# Clips missing or broken in a public K400 copy: skipped in training (counted and logged),
# counted as misses in testing (WORK_DIR/invalid_samples.txt). See README.md here.
#   bash tools/dist_train.sh \
#       configs/llava_action/llava-7b-v1.5_lora-8xb4-accum4-1e_kinetics400-8f.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py']
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
