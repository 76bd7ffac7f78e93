"""Registers every mmllava module and sets the default scope."""
import datetime
import warnings

from mmengine.registry import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every mmllava module so that it registers itself.

    Args:
        init_default_scope (bool): Make ``mmllava`` the current default scope.
    """
    import mmllava.conversation  # noqa: F401
    import mmllava.datasets  # noqa: F401
    import mmllava.engine  # noqa: F401
    import mmllava.evaluation  # noqa: F401
    import mmllava.models  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None:
        DefaultScope.get_instance('mmllava', scope_name='mmllava')
    elif current.scope_name != 'mmllava':
        warnings.warn(f'The current default scope "{current.scope_name}" is not '
                      '"mmllava"; a new one named "mmllava-<timestamp>" is set.')
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S%f')
        DefaultScope.get_instance(f'mmllava-{stamp}', scope_name='mmllava')
