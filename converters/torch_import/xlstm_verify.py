"""A converted xLSTMBlockStack checked against the package's own recurrent `step()` too.

The torch verifier compares the file with the module's forward, which for an xLSTM stack
is the parallel form. When the converted module is itself a stack, its `step()` is the
package's streaming reference: here n streams of the file are stepped next to it on the
same random inputs, and the error joins the verification report (stream errors count
towards `ok`). A stack inside another module has no step() of its own module to compare
with; its verification is the module's forward.
"""
from __future__ import annotations

import numpy as np

from .fx import torch_module

STEPS = 40


def verify_package_steps(path, stack, verify, seed: int = 0) -> None:
    """Add the max abs error of the file's streams against `stack.step()` to `verify`."""
    torch = torch_module()
    import lstm_infer
    model = lstm_infer.load(path)
    d = stack.config.embedding_dim
    x = np.random.default_rng(seed + 7).standard_normal((2, STEPS, d)).astype(np.float32)
    pool = model.streams(2)
    state, err = None, 0.0
    with torch.no_grad():
        for t in range(STEPS):
            ref, state = stack.step(torch.from_numpy(x[:, t:t + 1].copy()), state)
            got = pool.step(x[:, t])
            err = max(err, float(np.abs(got - ref[:, 0].numpy()).max()))
    verify.stream_max_abs["output vs package step()"] = err
    verify.notes.append(f"streams against the xlstm package's step() over {STEPS} steps: "
                        f"max abs error {err:.3g}")
