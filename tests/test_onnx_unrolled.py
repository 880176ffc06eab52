"""Recurrences an exporter unrolled over a fixed length (issue 9, cause 12): until they can
be folded back into a recurrent op, they are refused with the reason, not converted into a
fixed-window model that reads the whole window as one step (which torch.onnx's dynamo export
of a batch-first nn.RNN used to become: input [1, 37, 5] -> one step of 185 features)."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from converters import ConversionError, convert_onnx  # noqa: E402


class _RNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(5, 8, batch_first=True)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


class _CellLoop(torch.nn.Module):
    """An LSTMCell loop written by hand: TorchScript export unrolls it."""
    def __init__(self):
        super().__init__()
        self.cell = torch.nn.LSTMCell(5, 8)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 8)
        c = torch.zeros(x.shape[0], 8)
        out = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            out.append(self.fc(h))
        return torch.stack(out, 1)


@pytest.mark.parametrize("module,dynamo", [(_RNN, True), (_CellLoop, False)], ids=["rnn-dynamo", "cell-loop"])
def test_unrolled_recurrence_is_refused_with_the_reason(tmp_path, module, dynamo):
    torch.manual_seed(0)
    src = tmp_path / "m.onnx"
    torch.onnx.export(module().eval(), (torch.randn(1, 12, 5),), str(src), dynamo=dynamo)
    with pytest.raises(ConversionError, match="unrolled over a fixed number of steps") as e:
        convert_onnx(src, tmp_path / "m.lstm")
    assert "whole window as one step" in str(e.value)
    assert not (tmp_path / "m.lstm").exists()
