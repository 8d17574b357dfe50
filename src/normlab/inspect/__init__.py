"""normlab inspect: the lab's forward probes on a pretrained Hugging Face causal LM (a positive control).

load.py (hub or local folder, safetensors only), hooks.py (what to tap per architecture), text.py (the
text and its windows), run.py (forward, probes, inspect.json), report.py (report.md / .html, figures).
transformers is imported only when a model is loaded.
"""
from .run import inspect_model

__all__ = ["inspect_model"]
