"""xLSTM stacks from the official `xlstm` package (pip install xlstm==2.0.6) converted with
convert_torch, checked against the package itself: run() against its parallel forward,
step()/step_many() against its own recurrent step(), over 200+ steps with the state carried
across chunks, for mLSTM-only, sLSTM-only and mixed stacks of several blocks.

Tolerance: max abs error 1e-4 over 200+ steps on unit-scale inputs (the package's parallel
mLSTM form sums the (S, S) decay matrix in another order than the recurrent form: the two
forms of the package itself differ by ~3e-6 at 50 steps); per-step ops agree to ~1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
xlstm = pytest.importorskip("xlstm", reason="needs the xlstm package: pip install xlstm==2.0.6")

from converters import ConversionError  # noqa: E402
from converters.torch_import import convert_torch  # noqa: E402
import lstm_infer  # noqa: E402

TOL = 1e-4
T = 210


def make_stack(d=32, blocks=3, slstm_at=(1,), ffn="gelu", heads=4, conv=4, bias=False,
               post_norm=True, seed=0):
    """A random-weight stack: the package's init plus noise, so that every weight matters
    (its init zeroes the gates' weights and the recurrent kernel)."""
    torch.manual_seed(seed)
    m_cfg = xlstm.mLSTMBlockConfig(mlstm=xlstm.mLSTMLayerConfig(
        conv1d_kernel_size=conv, qkv_proj_blocksize=4, num_heads=heads))
    s_cfg = xlstm.sLSTMBlockConfig(
        slstm=xlstm.sLSTMLayerConfig(backend="vanilla", num_heads=heads, conv1d_kernel_size=conv),
        feedforward=None if ffn is None else xlstm.FeedForwardConfig(proj_factor=1.3, act_fn=ffn))
    all_s = len(slstm_at) == blocks
    cfg = xlstm.xLSTMBlockStackConfig(
        mlstm_block=None if all_s else m_cfg, slstm_block=s_cfg if slstm_at else None,
        context_length=T + 16, num_blocks=blocks, embedding_dim=d, slstm_at=list(slstm_at),
        bias=bias, add_post_blocks_norm=post_norm)
    stack = xlstm.xLSTMBlockStack(cfg).eval()
    with torch.no_grad():
        for p in stack.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return stack


def package_steps(stack, x):
    """The package's own recurrent step() over x (B, T, d), one step at a time."""
    outs, state = [], None
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = stack.step(x[:, t:t + 1], state)
            outs.append(y)
    return torch.cat(outs, 1).numpy()


def convert(stack, tmp_path, name="x.lstm"):
    path = tmp_path / name
    report = convert_torch(stack, path, example_input=torch.randn(2, 6, stack.config.embedding_dim))
    assert report.verify.ok, report.verify
    assert report.verify.stream_max_abs["output vs package step()"] < TOL
    return lstm_infer.load(path)


@pytest.mark.parametrize("kind", ["mlstm", "slstm", "mixed"])
def test_stack_against_package(kind, tmp_path):
    slstm_at = {"mlstm": (), "slstm": (0, 1), "mixed": (1, 3)}[kind]
    blocks = 2 if kind == "slstm" else 4
    stack = make_stack(blocks=blocks, slstm_at=slstm_at, seed=len(kind))
    model = convert(stack, tmp_path)
    x = torch.randn(2, T, 32)
    with torch.no_grad():
        parallel = stack(x).numpy()
    stepped = package_steps(stack, x)
    assert np.abs(stepped - parallel).max() < TOL  # the package's two forms agree
    y = model.run(x.numpy())
    assert np.abs(y - parallel).max() < TOL
    assert np.abs(y - stepped).max() < TOL
    # streamed: step() then step_many() chunks, the state carried across calls
    s = model.stream()
    xs = x[0].numpy()
    out = [s.step(xs[t]) for t in range(3)]
    t, k = 3, 0
    while t < T:
        n = (7, 1, 64, 19)[k % 4]
        out.append(s.step_many(xs[t:t + n]))
        t, k = t + n, k + 1
    streamed = np.concatenate([np.atleast_2d(o) for o in out])
    assert streamed.shape == (T, 32)
    assert np.abs(streamed - stepped[0]).max() < TOL
    # n streams at once == the batch
    pool = model.streams(2)
    pooled = np.stack([pool.step(x[:, t].numpy()) for t in range(T)], 1)
    assert np.abs(pooled - stepped).max() < TOL


def test_module_with_layers_around_a_stack(tmp_path):
    stack = make_stack(d=16, blocks=2, slstm_at=(0,), ffn="swish", bias=True)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(5, 16)
            self.body = stack
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.body(self.inp(x))))

    net = Net().eval()
    path = tmp_path / "net.lstm"
    report = convert_torch(net, path, example_input=torch.randn(2, 6, 5))
    assert report.verify.ok, report.verify
    model = lstm_infer.load(path)
    x = torch.randn(3, T, 5)
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.abs(model.run(x.numpy()) - ref).max() < TOL
    s = model.stream()
    half = T // 2
    got = np.concatenate([s.step_many(x[1, :half].numpy()), s.step_many(x[1, half:].numpy())])
    assert np.abs(got - ref[1]).max() < TOL
    # the stack's forward is back to the package's after conversion
    assert "forward" not in vars(stack)


def test_options_without_conv_or_ffn_or_post_norm(tmp_path):
    # sLSTM only: the package's mLSTMLayer cannot be built with conv1d_kernel_size 0
    stack = make_stack(d=16, blocks=2, slstm_at=(0, 1), ffn=None, conv=0, post_norm=False)
    model = convert(stack, tmp_path)
    x = torch.randn(1, 40, 16)
    assert np.abs(model.run(x.numpy()) - package_steps(stack, x)).max() < TOL


def test_unsupported_options_are_refused(tmp_path):
    stack = make_stack(d=16, blocks=2, slstm_at=(0,), ffn="relu^2")
    with pytest.raises(ConversionError, match="act_fn 'relu\\^2' is not supported"):
        convert_torch(stack, tmp_path / "r.lstm", example_input=torch.randn(2, 6, 16))
