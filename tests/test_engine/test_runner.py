"""Weight loading of LlavaRunner: trainable-only checkpoints, load_base, safe load_from, and
resume that unpickles only inside the run's own work_dir."""
import shutil

import pytest
import torch
from fixtures_train import dataloader_cfg, write_colour_data
from mmengine.config import Config

from mmllava.engine import (
    LlavaRunner,
    ResumeOutsideWorkDirError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    check_resume_path,
    find_resume_checkpoint,
    load_partial_weights,
    load_weights,
    save_weights,
)
from mmllava.utils import register_all_modules

PRETRAIN = 'configs/llava/llava-tiny_pretrain.py'


def make_cfg(work_dir, ann, max_iters=2, **extra):
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(PRETRAIN)
    cfg.train_dataloader = dataloader_cfg(ann, 'plain', batch_size=2)
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict(extra)
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('runner')
    ann = write_colour_data(root / 'data', 8, 'plain')
    work_dir = root / 'work'
    runner = LlavaRunner.from_cfg(make_cfg(work_dir, ann))
    runner.train()
    return root, ann, work_dir, runner.model


def test_checkpoint_holds_trainable_only(trained):
    _, _, work_dir, model = trained
    ckpt = torch.load(work_dir / 'iter_2.pth', weights_only=False)
    projector = {n for n, _ in model.named_parameters() if n.startswith('projector.')}
    assert set(ckpt['state_dict']) == projector
    assert ckpt['meta']['trainable_only'] is True
    twin = load_weights(work_dir / 'iter_2.safetensors')
    assert set(twin) == projector
    for k, v in twin.items():
        torch.testing.assert_close(v, model.state_dict()[k], rtol=0, atol=0)


def test_resume_inside_work_dir_loads_state(trained):
    root, ann, work_dir, model = trained
    cfg = make_cfg(work_dir, ann, max_iters=3, resume=True,
                   load_from=str(work_dir / 'iter_2.pth'))
    runner = LlavaRunner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3
    assert (work_dir / 'iter_3.pth').exists()


def test_resume_outside_work_dir_is_refused(trained):
    root, ann, work_dir, _ = trained
    elsewhere = root / 'elsewhere'
    elsewhere.mkdir(exist_ok=True)
    shutil.copy(work_dir / 'iter_2.pth', elsewhere / 'iter_2.pth')
    cfg = make_cfg(root / 'work2', ann, resume=True, load_from=str(elsewhere / 'iter_2.pth'))
    runner = LlavaRunner.from_cfg(cfg)
    with pytest.raises(ResumeOutsideWorkDirError, match='not inside this run'):
        runner.train()
    # A symlink into the work_dir from outside does not count as inside; ../ tricks neither.
    assert check_resume_path(str(work_dir / 'iter_2.pth'), str(work_dir))
    with pytest.raises(ResumeOutsideWorkDirError):
        check_resume_path(str(work_dir / '..' / 'elsewhere' / 'iter_2.pth'), str(work_dir))


def test_find_resume_checkpoint_survives_an_empty_marker(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None  # no marker: nothing saved
    for name in ('iter_4.pth', 'iter_12.pth', 'iter_8.pth', 'iter_12.safetensors'):
        (tmp_path / name).write_bytes(b'x')
    marker = tmp_path / 'last_checkpoint'
    marker.write_text(str(tmp_path / 'iter_8.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_8.pth')
    marker.write_text('')  # killed between opening and writing it
    with pytest.warns(UserWarning, match='is empty'):
        assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_12.pth')
    marker.write_text(str(tmp_path / 'iter_16.pth'))
    with pytest.warns(UserWarning, match='does not exist'):
        assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_12.pth')


def test_auto_resume_with_an_empty_last_checkpoint(trained):
    root, ann, work_dir, _ = trained
    killed = root / 'killed'
    shutil.copytree(work_dir, killed, ignore=shutil.ignore_patterns('iter_3*'))
    (killed / 'last_checkpoint').write_text('')
    runner = LlavaRunner.from_cfg(make_cfg(killed, ann, max_iters=3, resume=True))
    with pytest.warns(UserWarning, match='resuming from the newest'):
        runner.train()
    assert runner.iter == 3 and (killed / 'iter_3.pth').exists()


def test_auto_resume_with_an_empty_marker_and_no_checkpoint_starts_fresh(trained, tmp_path):
    _, ann, _, _ = trained
    work = tmp_path / 'empty'
    work.mkdir()
    (work / 'last_checkpoint').write_text('')  # killed before any checkpoint was complete
    runner = LlavaRunner.from_cfg(make_cfg(work, ann, max_iters=1, resume=True))
    runner.train()
    assert runner.iter == 1 and (work / 'iter_1.pth').exists()


def test_load_from_is_safe_and_points_to_the_twin(trained):
    root, ann, work_dir, model = trained
    cfg = make_cfg(root / 'work3', ann, load_from=str(work_dir / 'iter_2.pth'))
    runner = LlavaRunner.from_cfg(cfg)
    with pytest.raises(UnsafeCheckpointError, match='iter_2.safetensors'):
        runner.load_or_resume()
    cfg = make_cfg(root / 'work4', ann, load_from=str(work_dir / 'iter_2.safetensors'))
    runner = LlavaRunner.from_cfg(cfg)
    runner.load_or_resume()
    got = runner.model.state_dict()
    for k, v in load_weights(work_dir / 'iter_2.safetensors').items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0)


def test_load_base_then_partial(trained, tmp_path):
    root, ann, work_dir, model = trained
    base = {k: torch.randn_like(v) for k, v in model.state_dict().items()
            if not k.startswith('projector.')}
    save_weights(base, tmp_path / 'base.safetensors')
    cfg = make_cfg(tmp_path / 'w', ann, load_base=[str(tmp_path / 'base.safetensors'),
                                                    str(work_dir / 'iter_2.safetensors')])
    runner = LlavaRunner.from_cfg(cfg)
    runner.load_or_resume()
    got = runner.model.state_dict()
    expected = {**base, **load_weights(work_dir / 'iter_2.safetensors')}
    assert set(expected) == set(got)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0)


def test_partial_weights_rules(trained):
    _, _, _, model = trained
    sd = model.state_dict()
    with pytest.raises(StateDictMismatchError, match='unexpected'):
        load_partial_weights(model, {'not.a.key': torch.zeros(1)})
    with pytest.raises(StateDictMismatchError, match='shape'):
        load_partial_weights(model, {'projector.0.bias': torch.zeros(3)})
    # Resume needs every trainable parameter (the projector here).
    with pytest.raises(StateDictMismatchError, match='projector.0.weight'):
        load_partial_weights(model, {'projector.0.bias': sd['projector.0.bias']},
                             require_trainable=True)
    missing = load_partial_weights(model, {'projector.0.bias': sd['projector.0.bias']})
    assert 'projector.0.weight' in missing and 'projector.0.bias' not in missing


def test_llava_collate_mixes_image_and_text_only_samples():
    from mmengine.dataset import pseudo_collate

    from mmllava.datasets import llava_collate
    from mmllava.models import LlavaDataPreprocessor
    image = dict(inputs=dict(input_ids=torch.tensor([1, 5, 6]), labels=torch.tensor([-100, 5, 6]),
                             images=torch.zeros(1, 3, 4, 4, dtype=torch.uint8)),
                 data_samples=None)
    text = dict(inputs=dict(input_ids=torch.tensor([1, 7]), labels=torch.tensor([-100, 7])),
                data_samples=None)
    with pytest.raises(KeyError):
        pseudo_collate([image, text])
    batch = LlavaDataPreprocessor()(llava_collate([image, text]), True)['inputs']
    assert batch['input_ids'].tolist() == [[1, 5, 6], [1, 7, 0]]
    assert batch['pixel_values'].shape == (1, 3, 4, 4)
