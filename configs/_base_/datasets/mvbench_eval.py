# MVBench (OpenGVLab/MVBench release: json/<task>.json + video/<prefix>/...), the 20 tasks of
# the authors' evaluation video_chat2/mvbench.ipynb (OpenGVLab/Ask-Anything): its task table,
# frame sampling (the middle frame of each of num_frames segments within the start/end
# bounds; frame folders at 3 fps), prompt (its system text, "Question: ...\nOptions:\n(A) ...
# \nOnly give the best option.", the answer prefix "Best option:(") and check_ans, per task
# and the mean over tasks (metric mvbench/mean). The model config gives the test pipeline
# (LoadVisuals with num_frames: 16, the notebook's num_frame; its resize; TokenizeConversation);
# rank_options=True also ranks the options by likelihood (mvbench/likelihood/*).
data_root = 'data/MVBench'
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='llava_collate'),
    dataset=dict(type='MVBenchDataset', data_root=data_root, json_dir='json',
                 video_dir='video', tasks=None, rank_options=False, test_mode=True))
test_evaluator = dict(type='MVBenchMetric', prefix='mvbench', likelihood=None)
test_cfg = dict(type='TestLoop')
