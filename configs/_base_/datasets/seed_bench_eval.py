# SEED-Bench v1 (AILab-CVC/SEED-Bench: SEED-Bench.json, SEED-Bench-image/ and the video
# questions' frames), all 12 dimensions, LLaVA-1.5's prompt (question, "A. ..." options,
# "Answer with the option's letter from the given choices directly."; llava-seed-bench.jsonl,
# rebuilt the same way by lmms-eval's lmms_eval/tasks/seedbench/utils.py), scored as LLaVA's
# scripts/convert_seed_for_submission.py scores it: the answer must be the letter; accuracy per
# dimension and over the image, video and all questions.
#
# Video questions (dimensions 10-12): video_source='llava_frames' reads LLaVA's middle frames
# (playground/data/eval/seed_bench/extract_video_frames.py writes SEED-Bench-video-image/
# {question_type_id}_{question_id}.png); 'frames' the authors' 8 frames per question
# (v1_video.zip: video_prefix/task{10,11,12}/..._8_frame/{question_id}/{1..8}.png); 'videos'
# the source videos (video_prefix=dict({10: SSv2 folder, 11: EPIC-KITCHENS, 12: Breakfast}))
# with SEED-Bench's frame choice inside each segment. video_frames='clip' asks with num_frames
# frames (SEEDBenchLoadVisuals below), 'middle' with one. data_type='image'/'video' or
# dims=[...] select questions. rank_options=True scores the four choice texts by likelihood
# as SEED-Bench's own eval.py does (prompt: the question alone) instead of the letter.
_base_ = ['./llava_eval.py']
data_root = 'data/seed_bench'
image_size = 336
test_pipeline = [
    dict(type='SEEDBenchLoadVisuals', num_frames=8, num_image_tokens=576),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=image_size),
    dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
         add_generation_prompt=True),
    dict(type='PackLlavaInputs',
         meta_keys=('sample_id', 'question_id', 'prompt', 'question', 'choices', 'category',
                    'data_type', 'img_paths', 'ori_shapes', 'img_shapes', 'invalid_sample',
                    'answer_candidates', 'candidate_ids')),
]
test_dataloader = dict(
    dataset=dict(
        type='SEEDBenchDataset',
        data_root=data_root,
        ann_file='SEED-Bench.json',
        img_prefix='SEED-Bench-image',
        video_prefix='SEED-Bench-video-image',
        video_source='llava_frames',
        video_frames='middle',
        data_type='all',
        rank_options=False,
        pipeline=test_pipeline))
test_evaluator = dict(type='SEEDBenchMetric', prefix='seed', letter_rule='exact')
