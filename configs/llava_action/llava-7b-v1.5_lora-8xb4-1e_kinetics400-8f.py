# LLaVA-1.5-7B LoRA on Kinetics-400 (mmaction2's tools/data/kinetics layout, videos resized to
# short side 256 as mmaction2 recommends). 400 class names do not fit in a 2048-token prompt
# beside 1152 clip tokens, so the question is open ("What is the person doing?") and the model
# learns to answer with the class name. See README.md here.
#   bash tools/dist_train.sh configs/llava_action/llava-7b-v1.5_lora-8xb4-1e_kinetics400-8f.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-1e_ucf101-split1-8f.py']
data_root = 'data/kinetics400'
label_map = 'label_map_k400.txt'  # mmaction2's tools/data/kinetics/label_map_k400.txt
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='kinetics400_train_list_videos.txt', label_map=label_map,
    img_prefix='videos_train', question_mode='open',
    # A few Kinetics clips fail to download or decode: skip them (counted and logged).
    skip_invalid=True))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='kinetics400_val_list_videos.txt', label_map=label_map,
    img_prefix='videos_val', question_mode='open'))
# The model ranks the label map's names by likelihood: top-1/top-5 and pred_scores.
model = dict(class_names=f'{data_root}/{label_map}')
test_evaluator = dict(classes=f'{data_root}/{label_map}')
