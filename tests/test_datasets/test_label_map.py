"""Label maps: one reader, mmaction2's identifier names as words, in every part that reads them."""
import json

import pytest
from fixtures_llava import load_script

from mmllava.datasets.label_map import read_label_map, readable_class_name

MMACTION_NAMES = ['ApplyEyeMakeup', 'brush_hair', 'YoYo', 'passing American football (in game)',
                  'riding_a_horse', 'TVShow']
READABLE = ['apply eye makeup', 'brush hair', 'yo yo', 'passing American football (in game)',
            'riding a horse', 'tv show']


def test_readable_class_names():
    assert [readable_class_name(n) for n in MMACTION_NAMES] == READABLE
    # Names that are words already stay as they are (MoCap-Actions, Kinetics-400, SSv2).
    for name in ('walking backward', 'jumping', 'Pushing something from left to right'):
        assert readable_class_name(name) == name
    assert readable_class_name('  walking   backward ') == 'walking backward'
    assert readable_class_name('BoxingPunchingBag') == 'boxing punching bag'


def test_read_label_map_keeps_label_ids_and_refuses_gaps(tmp_path):
    path = tmp_path / 'label_map.txt'
    path.write_text('\n'.join(MMACTION_NAMES) + '\n\n')
    assert read_label_map(str(path)) == READABLE
    assert read_label_map(str(path), readable=False) == MMACTION_NAMES
    path.write_text('ApplyEyeMakeup\n\nbrush_hair\n')
    with pytest.raises(ValueError, match='label_map.txt:2: blank line'):
        read_label_map(str(path))
    # Two names that read the same could not be told apart by the answers.
    path.write_text('brush_hair\nBrushHair\n')
    with pytest.raises(ValueError, match="label_map.txt:2: class 'brush hair' is listed twice"):
        read_label_map(str(path))
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        read_label_map(str(tmp_path / 'nope.txt'))


def test_dataset_model_metric_and_converter_read_the_same_names(tmp_path):
    """The names a dataset asks and answers are those the model ranks and the metric scores."""
    from mmengine.config import Config

    from mmllava.apis.pipeline import closed_set_classes
    from mmllava.datasets import ActionListDataset
    from mmllava.evaluation import ActionAccuracy
    label_map = tmp_path / 'label_map.txt'
    label_map.write_text('\n'.join(MMACTION_NAMES[:3]) + '\n')
    (tmp_path / 'v.mp4').write_bytes(b'')
    (tmp_path / 'list.txt').write_text('v.mp4 1\n')
    dataset = ActionListDataset(ann_file=str(tmp_path / 'list.txt'), label_map=str(label_map),
                                img_prefix=str(tmp_path), check_images=False, lazy_init=False)
    assert dataset.class_names == READABLE[:3]
    info = dataset.get_data_info(0)
    assert 'apply eye makeup, brush hair, yo yo' in info['messages'][0]['content']
    assert info['messages'][1]['content'] == 'brush hair' and info['gt_label'] == 1
    # In test mode the same names are the candidates the model ranks, and the metric's classes.
    test_set = ActionListDataset(ann_file=str(tmp_path / 'list.txt'), label_map=str(label_map),
                                 img_prefix=str(tmp_path), check_images=False, test_mode=True,
                                 lazy_init=False)
    assert test_set.get_data_info(0)['answer_candidates'] == READABLE[:3]
    metric = ActionAccuracy()
    metric.dataset_meta = test_set.metainfo
    assert metric.classes == READABLE[:3] == ActionAccuracy(str(label_map)).classes
    cfg = Config(dict(test_dataloader=dict(dataset=dict(label_map=str(label_map)))))
    assert closed_set_classes(cfg) == READABLE[:3]  # inference_model's candidates
    tool = load_script('tools/dataset_converters/action_to_llava.py')
    out = tmp_path / 'out.json'
    assert tool.main([str(tmp_path / 'list.txt'), str(label_map), str(out)]) == 0
    assert json.loads(out.read_text())[0]['conversations'][1]['value'] == 'brush hair'
    assert tool.main([str(tmp_path / 'list.txt'), str(label_map), str(out),
                      '--raw-class-names']) == 0
    assert json.loads(out.read_text())[0]['conversations'][1]['value'] == 'brush_hair'
