# POPE (official coco_pope_{adversarial,popular,random}.json JSON lines) on COCO val2014 with
# LLaVA-1.5's short-answer prompt; pope/f1_split_mean is the number LLaVA reports. With the
# three files in one run the question ids become "{split}_{id}" (each file numbers from 1).
_base_ = ['./llava_eval.py']
data_root = 'data/pope'
test_dataloader = dict(
    dataset=dict(
        type='POPEDataset',
        data_root=data_root,
        ann_file=['coco/coco_pope_adversarial.json', 'coco/coco_pope_popular.json',
                  'coco/coco_pope_random.json'],
        img_prefix='val2014',
        prompt_suffix='Answer the question using a single word or phrase.'))
test_evaluator = dict(type='POPEMetric', prefix='pope')
