"""nodynamo.optimizer_step: the step below torch's wrappers updates exactly as optimizer.step() does."""
import pytest
import torch

from normlab.training import nodynamo


def _trained(opt_of, stepper):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    opt = opt_of(model.parameters())
    for i in range(3):
        model(torch.randn(4, 5, generator=torch.Generator().manual_seed(i))).square().mean().backward()
        stepper(opt)
        opt.zero_grad(set_to_none=True)
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("opt_of", [lambda p: torch.optim.AdamW(p, lr=0.01, fused=True),
                                    lambda p: torch.optim.Adam(p, lr=0.01, foreach=True),
                                    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)])
def test_the_plain_step_is_torchs_step(opt_of):
    def plain_step(opt):
        step = nodynamo._plain_step(opt)
        assert step is not None, "torch's step wrappers were not recognised"
        with torch.no_grad():
            step(opt)
    plain = _trained(opt_of, plain_step)
    assert all(torch.equal(a, b) for a, b in zip(plain, _trained(opt_of, lambda opt: opt.step())))


def test_step_hooks_take_torchs_own_path():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    called = []
    opt.register_step_post_hook(lambda *a: called.append(1))
    model(torch.ones(1, 2)).sum().backward()
    nodynamo.optimizer_step(opt)
    assert called == [1]
