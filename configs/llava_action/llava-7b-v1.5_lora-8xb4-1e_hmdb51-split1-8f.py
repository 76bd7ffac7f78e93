# LLaVA-1.5-7B LoRA on HMDB51 split 1 (51 classes, closed question): the UCF101 recipe on
# mmaction2's tools/data/hmdb51 layout. See README.md here.
#   bash tools/dist_train.sh configs/llava_action/llava-7b-v1.5_lora-8xb4-1e_hmdb51-split1-8f.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-1e_ucf101-split1-8f.py']
data_root = 'data/hmdb51'
label_map = 'label_map.txt'  # mmaction2's tools/data/hmdb51/label_map.txt
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='hmdb51_train_split_1_videos.txt', label_map=label_map))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='hmdb51_val_split_1_videos.txt', label_map=label_map))
# The model ranks the label map's names by likelihood: top-1/top-5 and pred_scores.
model = dict(class_names=f'{data_root}/{label_map}')
test_evaluator = dict(classes=f'{data_root}/{label_map}')
