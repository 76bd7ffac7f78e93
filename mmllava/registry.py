"""mmllava registries: children of mmpretrain's, so mmpretrain parts build by name.

A config's ``default_scope = 'mmllava'`` looks names up here first, then in mmpretrain's and
mmengine's registries.
"""
from mmengine.registry import Registry
from mmpretrain.registry import DATA_SAMPLERS as MMPRETRAIN_DATA_SAMPLERS
from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS
from mmpretrain.registry import EVALUATORS as MMPRETRAIN_EVALUATOR
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import LOOPS as MMPRETRAIN_LOOPS
from mmpretrain.registry import METRICS as MMPRETRAIN_METRICS
from mmpretrain.registry import MODEL_WRAPPERS as MMPRETRAIN_MODEL_WRAPPERS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMPRETRAIN_OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.registry import OPTIM_WRAPPERS as MMPRETRAIN_OPTIM_WRAPPERS
from mmpretrain.registry import OPTIMIZERS as MMPRETRAIN_OPTIMIZERS
from mmpretrain.registry import PARAM_SCHEDULERS as MMPRETRAIN_PARAM_SCHEDULERS
from mmpretrain.registry import TRANSFORMS as MMPRETRAIN_TRANSFORMS
from mmpretrain.registry import VISUALIZERS as MMPRETRAIN_VISUALIZERS

MODELS = Registry('model', parent=MMPRETRAIN_MODELS, scope='mmllava',
                  locations=['mmllava.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMPRETRAIN_MODEL_WRAPPERS,
                          scope='mmllava', locations=['mmllava.models'])
DATASETS = Registry('dataset', parent=MMPRETRAIN_DATASETS, scope='mmllava',
                    locations=['mmllava.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMPRETRAIN_DATA_SAMPLERS,
                         scope='mmllava', locations=['mmllava.datasets'])
TRANSFORMS = Registry('transform', parent=MMPRETRAIN_TRANSFORMS, scope='mmllava',
                      locations=['mmllava.datasets.transforms'])
METRICS = Registry('metric', parent=MMPRETRAIN_METRICS, scope='mmllava',
                   locations=['mmllava.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMPRETRAIN_EVALUATOR, scope='mmllava',
                     locations=['mmllava.evaluation'])
HOOKS = Registry('hook', parent=MMPRETRAIN_HOOKS, scope='mmllava',
                 locations=['mmllava.engine'])
LOOPS = Registry('loop', parent=MMPRETRAIN_LOOPS, scope='mmllava',
                 locations=['mmllava.engine'])
OPTIMIZERS = Registry('optimizer', parent=MMPRETRAIN_OPTIMIZERS, scope='mmllava',
                      locations=['mmllava.engine'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMPRETRAIN_OPTIM_WRAPPERS,
                          scope='mmllava', locations=['mmllava.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMPRETRAIN_OPTIM_WRAPPER_CONSTRUCTORS, scope='mmllava',
    locations=['mmllava.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler',
                            parent=MMPRETRAIN_PARAM_SCHEDULERS, scope='mmllava',
                            locations=['mmllava.engine'])
VISUALIZERS = Registry('visualizer', parent=MMPRETRAIN_VISUALIZERS,
                       scope='mmllava', locations=['mmllava.visualization'])
# Our own: chat templates and tokenizers (no mmpretrain counterpart).
TEMPLATES = Registry('template', scope='mmllava',
                     locations=['mmllava.conversation'])
TOKENIZERS = Registry('tokenizer', scope='mmllava',
                      locations=['mmllava.conversation'])
