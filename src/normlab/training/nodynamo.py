"""Keep torch._dynamo out of a process that compiles nothing: importing it costs a sweep worker about as much
as importing torch itself (benchmarks/RESULTS.md, "Worker start-up"), and nothing in an eager run uses it.

torch.optim imports it lazily, for compiled callers only:
- Optimizer.add_param_group / zero_grad / state_dict / load_state_dict are wrapped by torch._disable_dynamo,
  whose wrapper imports dynamo on its first call to build the disabled function, then caches that function on
  the wrapped one as `__dynamo_disable`;
- every optimizer's step() is wrapped by _use_grad_for_differentiable, which imports dynamo on every call to
  place two graph breaks, and sets grad mode from defaults["differentiable"].
Both only matter while dynamo traces the caller, and normlab never calls an optimizer inside a compiled
region (train.compile compiles the model's forward). So, while dynamo is not loaded, `skip_dynamo_wrappers`
fills that cache with the plain function, and `optimizer_step` calls the step below the wrappers under
no_grad (what the wrapper does in eager), where the optimizer has no step hooks. Anything unexpected in
torch's wrappers (another torch version) falls back to torch's own path: slower to start, never different.
"""
from __future__ import annotations

import sys

import torch

_DONE = False


def _code(fn) -> tuple[str, str]:
    """(file, function name) of `fn`'s own code: functools.wraps copies __qualname__, not the code."""
    code = getattr(fn, "__code__", None)
    return (code.co_filename.replace("\\", "/"), code.co_name) if code is not None else ("", "")


def dynamo_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def skip_dynamo_wrappers() -> int:
    """Pre-fill the disable cache of torch.optim.Optimizer's _disable_dynamo-wrapped methods; how many."""
    global _DONE
    if _DONE or dynamo_loaded():
        return 0
    count = 0
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        wrapper = getattr(torch.optim.Optimizer, name, None)
        plain = getattr(wrapper, "__wrapped__", None)
        file, code_name = _code(wrapper)
        if plain is not None and code_name == "inner" and file.endswith("torch/_compile.py"):
            plain.__dynamo_disable = plain
            count += 1
    _DONE = True
    return count


def _plain_step(optimizer):
    """The step function below torch's profile-hook and grad-mode wrappers, or None when they are not what
    this module expects."""
    fn = type(optimizer).step
    seen = []
    while hasattr(fn, "__wrapped__") and len(seen) < 3:
        file, name = _code(fn)
        if not file.endswith("torch/optim/optimizer.py") or name not in ("wrapper", "_use_grad"):
            break
        seen.append(name)
        fn = fn.__wrapped__
    return fn if seen and seen[-1] == "_use_grad" else None


def _has_hooks(optimizer) -> bool:
    from torch.optim import optimizer as module

    return bool(getattr(optimizer, "_optimizer_step_pre_hooks", None) or
                getattr(optimizer, "_optimizer_step_post_hooks", None) or
                getattr(module, "_global_optimizer_pre_hooks", None) or
                getattr(module, "_global_optimizer_post_hooks", None))


def optimizer_step(optimizer) -> None:
    """optimizer.step(), without importing torch._dynamo where it is not loaded yet."""
    plain = None if dynamo_loaded() or _has_hooks(optimizer) or optimizer.defaults.get("differentiable") \
        else _plain_step(optimizer)
    if plain is None:
        optimizer.step()
        return
    with torch.no_grad():
        plain(optimizer)
