from .compat import apply_all


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmllava module so that it registers itself (see :mod:`.setup_env`)."""
    from .setup_env import register_all_modules as register
    register(init_default_scope)


__all__ = ['apply_all', 'register_all_modules']
