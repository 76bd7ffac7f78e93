"""Batch collation for LLaVA samples of mixed modalities (training and inference)."""
from typing import Sequence

from mmengine.registry import FUNCTIONS


@FUNCTIONS.register_module()
def llava_collate(data_batch: Sequence[dict]) -> dict:
    """Keep each sample's ``inputs`` dict as it is: a list of dicts, one per sample.

    mmengine's ``pseudo_collate`` merges the ``inputs`` dicts key by key, which fails as soon
    as a batch mixes samples with images and text-only samples (the latter have no ``images``
    key). ``LlavaDataPreprocessor`` takes the list and does the batching (padding, stacking).
    """
    return dict(inputs=[d['inputs'] for d in data_batch],
                data_samples=[d.get('data_samples') for d in data_batch])
