# LLaVA-1.5-7B LoRA on Something-Something-v2 (174 classes; mmaction2's tools/data/sthv2
# layout, .webm videos decoded by PyAV). The class names are long templates ("Pushing
# something from left to right"): listing 174 of them overflows the prompt, so the question
# is open and the answer is the class name. Frame order matters here (left to right versus
# right to left): the clip's 8 frames keep their order. See README.md here.
#   bash tools/dist_train.sh configs/llava_action/llava-7b-v1.5_lora-8xb4-1e_sthv2-8f.py 8
_base_ = ['./llava-7b-v1.5_lora-8xb4-1e_ucf101-split1-8f.py']
data_root = 'data/sthv2'
label_map = 'label_map.txt'  # mmaction2's tools/data/sthv2/label_map.txt
train_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='sthv2_train_list_videos.txt', label_map=label_map,
    question_mode='open'))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='sthv2_val_list_videos.txt', label_map=label_map,
    question_mode='open'))
# The model ranks the label map's names by likelihood: top-1/top-5 and pred_scores.
model = dict(class_names=f'{data_root}/{label_map}')
test_evaluator = dict(classes=f'{data_root}/{label_map}')
