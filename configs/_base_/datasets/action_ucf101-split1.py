# UCF101 split 1 for the NeXT-family action recipes (mmaction2's tools/data/ucf101 layout):
# the lists, label map, loaders, metric and validation, without a pipeline (each recipe gives
# its model's: frames, tokens, resize, template) and without the model. The LLaVA-1.5 recipes
# state the same in llava_action/llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f.py.
data_root = 'data/ucf101'
label_map = 'label_map.txt'
list_format = 'videos'
img_prefix = 'videos'
question_mode = 'closed'  # the question lists the 101 classes
train_dataloader = dict(
    num_workers=4,
    persistent_workers=True,
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='ActionListDataset', data_root=data_root,
                 ann_file='ucf101_train_split_1_videos.txt', label_map=label_map,
                 list_format=list_format, img_prefix=img_prefix, question_mode=question_mode))
test_dataloader = dict(
    batch_size=8,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='ActionListDataset', data_root=data_root,
                 ann_file='ucf101_val_split_1_videos.txt', label_map=label_map,
                 list_format=list_format, img_prefix=img_prefix, question_mode=question_mode,
                 test_mode=True))
val_dataloader = test_dataloader
test_evaluator = dict(type='ActionAccuracy')
val_evaluator = test_evaluator
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
