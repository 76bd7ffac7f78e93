from .chat import ChatSession, chat, chat_template, prepare_chat_inputs
from .hub import ModelHub, list_models
from .inference import LlavaInferencer, get_model, inference_model, load_model

__all__ = ['LlavaInferencer', 'ModelHub', 'get_model', 'inference_model', 'list_models',
           'load_model', 'ChatSession', 'chat', 'chat_template', 'prepare_chat_inputs']
