"""Shared test check: changing tokens after position t never changes the logits at positions <= t."""
import torch


def assert_causal(model, vocab_size: int, T: int = 12, positions=(0, 5, 10)) -> None:
    idx = torch.randint(0, vocab_size, (2, T))
    base = model(idx)
    for t in positions:
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % vocab_size
        out = model(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])   # the later positions do see the change
