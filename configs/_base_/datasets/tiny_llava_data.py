# The tiny rendered LLaVA data (mmllava.datasets.TinyLlavaDataset): coloured shapes, 56 px.
# Rendered into `tiny_data_root` on first use when that folder does not exist (a log line
# says so); any other data in LLaVA JSON works by overriding the paths, e.g.
#   --cfg-options train_dataloader.dataset.data_root=DIR train_dataloader.dataset.ann_file=FILE
# Every name here starts with `tiny_` so that this file combines with the other bases. A
# training config takes what it needs:
#   _base_ = [..., '../_base_/datasets/tiny_llava_data.py']
#   train_dataloader = {{_base_.tiny_pretrain_dataloader}}
tiny_data_root = 'data/tiny_llava'
tiny_image_size = 56
# The tiny CLIP: 56 px / patch 14 = 4 x 4 patches, CLS dropped.
tiny_num_image_tokens = 16
tiny_max_length = 512  # the tiny LLM's max_position_embeddings
tiny_tokenizer = dict(
    type='SentencePieceTokenizer',
    model_file='{{ fileDirname }}/../../../resources/tiny-tokenizer/tokenizer.model')

# Pretraining (feature alignment): `plain` template, loss on the caption only.
tiny_pretrain_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=tiny_image_size),
    dict(type='TokenizeConversation', tokenizer=tiny_tokenizer, template='plain',
         num_image_tokens=tiny_num_image_tokens, max_length=tiny_max_length),
    dict(type='PackLlavaInputs'),
]
# Finetuning (instructions): `vicuna_v1`, loss on the answers and their </s>.
tiny_finetune_pipeline = [
    dict(type='LoadImages'),
    dict(type='PadToSquare', background=(122, 116, 104)),
    dict(type='CLIPResizeCrop', size=tiny_image_size),
    dict(type='TokenizeConversation', tokenizer=tiny_tokenizer, template='vicuna_v1',
         num_image_tokens=tiny_num_image_tokens, max_length=tiny_max_length),
    dict(type='PackLlavaInputs'),
]

tiny_pretrain_batch_size = 16
tiny_pretrain_dataloader = dict(
    batch_size=tiny_pretrain_batch_size,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    # A batch may mix image and text-only samples: keep per-sample inputs apart.
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='TinyLlavaDataset',
        data_root=tiny_data_root,
        split='pretrain',
        ann_file='pretrain.json',
        img_prefix='images',
        pipeline=tiny_pretrain_pipeline))

# The original's group_by_modality_length: batches are all-image or all-text.
tiny_finetune_batch_size = 8
tiny_finetune_dataloader = dict(
    batch_size=tiny_finetune_batch_size,
    num_workers=0,
    sampler=dict(type='LengthGroupedSampler', batch_size=tiny_finetune_batch_size,
                 group_by_modality=True),
    # A batch may mix image and text-only samples: keep per-sample inputs apart.
    collate_fn=dict(type='llava_collate'),
    dataset=dict(
        type='TinyLlavaDataset',
        data_root=tiny_data_root,
        split='finetune',
        ann_file='finetune.json',
        img_prefix='images',
        pipeline=tiny_finetune_pipeline))
