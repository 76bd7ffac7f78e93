# COCO Karpathy test captions with LLaVA-1.5's short caption prompt; BLEU, METEOR, ROUGE-L,
# CIDEr (SPICE when its jars are present). Needs java (pycocoevalcap's PTB tokenizer, METEOR).
_base_ = ['./llava_eval.py']
data_root = 'data/coco'
test_dataloader = dict(
    dataset=dict(
        type='COCOCaptionDataset',
        data_root=data_root,
        ann_file='annotations/coco_karpathy_test.json',
        img_prefix=''))
test_evaluator = dict(type='CaptionMetric')
