"""Names: a registered module's registry name is its Python name (configs say what code says)."""
from mmengine.registry import Registry

import mmllava.registry as registries
from mmllava.utils import register_all_modules


def test_registry_names_are_python_names():
    register_all_modules(init_default_scope=False)
    found = []
    for attr in dir(registries):
        registry = getattr(registries, attr)
        if not isinstance(registry, Registry) or registry.scope != 'mmllava' or attr == 'TEMPLATES':
            continue  # chat templates are data, registered by their template name
        for name, obj in registry.module_dict.items():
            if getattr(obj, '__name__', None) != name:
                found.append(f'{attr}: {name!r} is {obj!r}')
    assert not found, '\n'.join(found)
    assert {'Llava', 'LlavaProjector', 'HFCausalLM', 'LoadImages', 'LoadVideo'} <= (
        set(registries.MODELS.module_dict) | set(registries.TRANSFORMS.module_dict))
