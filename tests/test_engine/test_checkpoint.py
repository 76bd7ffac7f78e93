"""Safe checkpoint IO: formats, wrappers, shards, refusals and strict loading."""
import json
import os
import pickle

import pytest
import torch
from torch import nn

from mmllava.engine.checkpoint import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    load_model_weights,
    load_weights,
    save_weights,
)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def assert_same(a, b):
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize('ext', ['.safetensors', '.bin', '.pth', '.pt'])
def test_file_formats_round_trip(tmp_path, ext):
    sd = net().state_dict()
    path = str(tmp_path / f'w{ext}')
    save_weights(sd, path) if ext == '.safetensors' else torch.save(sd, path)
    assert_same(load_weights(path), sd)


@pytest.mark.parametrize('wrapper', ['state_dict', 'model'])
def test_mmengine_wrappers_are_unwrapped(tmp_path, wrapper):
    sd = net().state_dict()
    torch.save({wrapper: sd, 'meta': {'epoch': 3}}, str(tmp_path / 'epoch_3.pth'))
    assert_same(load_weights(tmp_path / 'epoch_3.pth'), sd)


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))

    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        torch.save({'weight': torch.ones(2), 'payload': Payload()}, f)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match='NOT|not executed|nothing in it was executed'):
        load_weights(path)
    assert not marker.exists()
    # A plain pickle (not a torch zip) is refused the same way.
    with open(tmp_path / 'evil.bin', 'wb') as f:
        pickle.dump(Payload(), f)
    with pytest.raises(UnsafeCheckpointError):
        load_weights(tmp_path / 'evil.bin')
    assert not marker.exists()


def test_truncated_files_raise_clear_errors(tmp_path):
    sd = net().state_dict()
    save_weights(sd, tmp_path / 'w.safetensors')
    torch.save(sd, tmp_path / 'w.bin')
    for name in ('w.safetensors', 'w.bin'):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[:len(data) // 2])
        with pytest.raises(CheckpointError, match='truncated or corrupt'):
            load_weights(tmp_path / name)


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(CheckpointError, match='No weights'):
        load_weights(tmp_path / 'nope.safetensors')
    (tmp_path / 'w.ckpt').write_bytes(b'x')
    with pytest.raises(CheckpointError, match='Unknown weights format'):
        load_weights(tmp_path / 'w.ckpt')
    with pytest.raises(CheckpointError, match='no weights file'):
        load_weights(tmp_path)


def test_non_tensor_entries_are_refused(tmp_path):
    torch.save({'a': torch.ones(1), 'step': 3}, tmp_path / 'w.pth')
    with pytest.raises(CheckpointError, match='step'):
        load_weights(tmp_path / 'w.pth')


@pytest.mark.parametrize('kind', ['safetensors', 'bin'])
def test_sharded_folders(tmp_path, kind):
    sd = net().state_dict()
    keys = sorted(sd)
    weight_map = {}
    for i, part in enumerate((keys[:2], keys[2:])):
        name = (f'model-0000{i + 1}-of-00002.safetensors' if kind == 'safetensors'
                else f'pytorch_model-0000{i + 1}-of-00002.bin')
        shard = {k: sd[k] for k in part}
        save_weights(shard, tmp_path / name) if kind == 'safetensors' else torch.save(
            shard, tmp_path / name)
        weight_map.update({k: name for k in part})
    index = 'model.safetensors.index.json' if kind == 'safetensors' else \
        'pytorch_model.bin.index.json'
    (tmp_path / index).write_text(json.dumps({'metadata': {}, 'weight_map': weight_map}))
    assert_same(load_weights(tmp_path, progress=True), sd)
    # A shard the index names but that is gone.
    os.remove(tmp_path / weight_map[keys[-1]])
    with pytest.raises(CheckpointError, match='missing'):
        load_weights(tmp_path)


def test_single_file_folder(tmp_path):
    sd = net().state_dict()
    save_weights(sd, tmp_path / 'model.safetensors')
    assert_same(load_weights(tmp_path), sd)


def test_save_handles_shared_and_non_contiguous_tensors(tmp_path):
    w = torch.randn(4, 6)
    sd = {'embed': w, 'head': w, 'view': w[:, :3], 't': w.t()}
    save_weights(sd, tmp_path / 'w.safetensors')
    back = load_weights(tmp_path / 'w.safetensors')
    assert_same(back, {k: v.contiguous() for k, v in sd.items()})


def test_strict_load_lists_missing_unexpected_and_shapes():
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    del sd['2.bias']
    sd['3.weight'] = torch.zeros(1)
    sd['0.weight'] = torch.zeros(5, 4)
    with pytest.raises(StateDictMismatchError) as err:
        load_model_weights(model, sd)
    msg = str(err.value)
    assert '2.bias' in msg and '3.weight' in msg
    assert '0.weight: expected [3, 4], got [5, 4]' in msg
    assert err.value.missing == ['2.bias'] and err.value.unexpected == ['3.weight']
    assert_same(model.state_dict(), before)  # nothing was loaded

    result = load_model_weights(model, sd, strict=False)
    assert result.missing == ['2.bias'] and result.unexpected == ['3.weight']
    assert result.mismatched == [('0.weight', (3, 4), (5, 4))]
    assert torch.equal(model[0].bias, torch.zeros(3))  # what matched was loaded
    assert torch.equal(model[0].weight, before['0.weight'])
    assert torch.equal(model[2].bias, before['2.bias'])


def test_strict_load_from_path_and_inv_freq_dropped(tmp_path):
    src = net()
    sd = dict(src.state_dict())
    sd['layers.0.self_attn.rotary_emb.inv_freq'] = torch.ones(2)
    torch.save(sd, tmp_path / 'w.bin')
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    result = load_model_weights(model, tmp_path / 'w.bin')
    assert not any(result)
    assert_same(model.state_dict(), src.state_dict())
