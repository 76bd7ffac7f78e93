# VQAv2 val (official question/annotation files) with LLaVA-1.5's short-answer prompt, scored
# with the official VQA accuracy. For test-dev, set ann_file='' and the evaluator to
# dict(type='VQASubmissionWriter', file_path=..., all_question_file=...) and submit the file.
_base_ = ['./llava_eval.py']
data_root = 'data/coco'
test_dataloader = dict(
    dataset=dict(
        type='VQAv2Dataset',
        data_root=data_root,
        question_file='annotations/v2_OpenEnded_mscoco_val2014_questions.json',
        ann_file='annotations/v2_mscoco_val2014_annotations.json',
        img_prefix='val2014',
        prompt_suffix='Answer the question using a single word or phrase.'))
test_evaluator = dict(type='VQAAccuracy')
