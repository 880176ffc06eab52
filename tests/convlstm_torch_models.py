"""PyTorch ConvLSTM modules written the way users write them (for tests/test_torch_convlstm.py
and the moving-shapes example): ndrplz/ConvLSTM_pytorch's ConvLSTMCell (one Conv2d over
cat([x, h], dim=1), torch.split into i, f, o, g, padding kernel//2, bias) and its
multi-layer ConvLSTM looping the cells over frames of a batch_first (B, T, C, H, W) input."""
from __future__ import annotations

import torch
from torch import nn


class ConvLSTMCell(nn.Module):
    def __init__(self, input_dim, hidden_dim, kernel_size=(3, 3), bias=True, order="ifog",
                 use_chunk=False):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.order = order
        self.use_chunk = use_chunk
        self.conv = nn.Conv2d(input_dim + hidden_dim, 4 * hidden_dim, kernel_size,
                              padding=(kernel_size[0] // 2, kernel_size[1] // 2), bias=bias)

    def forward(self, input_tensor, cur_state):
        h_cur, c_cur = cur_state
        combined = torch.cat([input_tensor, h_cur], dim=1)
        combined_conv = self.conv(combined)
        if self.use_chunk:
            parts = torch.chunk(combined_conv, 4, dim=1)
        else:
            parts = torch.split(combined_conv, self.hidden_dim, dim=1)
        z = dict(zip(self.order, parts))
        i = torch.sigmoid(z["i"])
        f = torch.sigmoid(z["f"])
        o = torch.sigmoid(z["o"])
        g = torch.tanh(z["g"])
        c_next = f * c_cur + i * g
        h_next = o * torch.tanh(c_next)
        return h_next, c_next

    def init_hidden(self, batch_size, image_size):
        height, width = image_size
        return (torch.zeros(batch_size, self.hidden_dim, height, width, device=self.conv.weight.device),
                torch.zeros(batch_size, self.hidden_dim, height, width, device=self.conv.weight.device))


class ConvLSTM(nn.Module):
    """ndrplz's multi-layer ConvLSTM: returns (layer_output_list, last_state_list)."""

    def __init__(self, input_dim, hidden_dims, kernel_size=(3, 3), batch_first=True, bias=True,
                 return_all_layers=False, **cell_kw):
        super().__init__()
        self.batch_first = batch_first
        self.return_all_layers = return_all_layers
        dims = [input_dim] + list(hidden_dims)
        self.cell_list = nn.ModuleList([ConvLSTMCell(dims[k], dims[k + 1], kernel_size, bias, **cell_kw)
                                        for k in range(len(hidden_dims))])

    def forward(self, input_tensor):
        if not self.batch_first:
            input_tensor = input_tensor.permute(1, 0, 2, 3, 4)
        b, _, _, h, w = input_tensor.size()
        layer_output_list, last_state_list = [], []
        seq_len = input_tensor.size(1)
        cur_layer_input = input_tensor
        for cell in self.cell_list:
            h_t, c_t = cell.init_hidden(b, (h, w))
            output_inner = []
            for t in range(seq_len):
                h_t, c_t = cell(cur_layer_input[:, t, :, :, :], [h_t, c_t])
                output_inner.append(h_t)
            layer_output = torch.stack(output_inner, dim=1)
            cur_layer_input = layer_output
            layer_output_list.append(layer_output)
            last_state_list.append([h_t, c_t])
        if not self.return_all_layers:
            layer_output_list = layer_output_list[-1:]
            last_state_list = last_state_list[-1:]
        return layer_output_list, last_state_list


class SequenceOnly(nn.Module):
    """The last layer's output sequence (B, T, F, H, W) only."""

    def __init__(self, *a, **kw):
        super().__init__()
        self.convlstm = ConvLSTM(*a, **kw)

    def forward(self, x):
        return self.convlstm(x)[0][-1]


class FrameHead(nn.Module):
    """ConvLSTM then a 1x1 Conv2d + sigmoid on every frame: next-frame prediction."""

    def __init__(self, input_dim, hidden_dims, out_channels=1, kernel_size=(3, 3), **kw):
        super().__init__()
        self.convlstm = ConvLSTM(input_dim, hidden_dims, kernel_size, **kw)
        self.head = nn.Conv2d(hidden_dims[-1], out_channels, 1)

    def forward(self, x):
        seq = self.convlstm(x)[0][-1]
        return torch.stack([torch.sigmoid(self.head(seq[:, t])) for t in range(seq.shape[1])], dim=1)


class LastStepClassifier(nn.Module):
    """ConvLSTM, the last step's h flattened, a Linear: sequence classification."""

    def __init__(self, input_dim, hidden_dims, size, classes=3, kernel_size=(3, 3), **kw):
        super().__init__()
        self.convlstm = ConvLSTM(input_dim, hidden_dims, kernel_size, **kw)
        self.fc = nn.Linear(hidden_dims[-1] * size[0] * size[1], classes)

    def forward(self, x):
        _, states = self.convlstm(x)
        h = states[-1][0]
        return self.fc(torch.flatten(h, 1))
