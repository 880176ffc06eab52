"""One converter per Keras layer class, registered by name (`.registry`), one module per
family: core (Dense, Embedding, reshapes, no-ops), activations, recurrent (LSTM, GRU,
SimpleRNN, RNN), conv_recurrent (ConvLSTM1D/2D), wrappers (Bidirectional, TimeDistributed), norm
(LayerNormalization, BatchNormalization), conv (Conv1D), merge (Concatenate, Add, ...), pooling
(global pooling over time), attention (MultiHeadAttention, Attention)."""
from __future__ import annotations

from . import (activations, attention, conv, conv_recurrent, core, merge, norm, pooling,  # noqa: F401
               recurrent, wrappers)  # (registration)
from .registry import LAYERS, layer
from .wrappers import SUPPORTED_PER_FRAME

__all__ = ["LAYERS", "layer", "SUPPORTED", "SUPPORTED_PER_FRAME"]

SUPPORTED = (
    "LSTM, GRU (reset_after True/False), SimpleRNN, RNN(LSTMCell|GRUCell|SimpleRNNCell) "
    "(return_sequences, go_backwards with return_sequences=False, return_state (output and h), "
    "stateful, unroll, activation/recurrent_activation among "
    "sigmoid, tanh, relu, linear, hard_sigmoid, elu, softsign, softplus, leaky_relu), "
    "ConvLSTM1D, ConvLSTM2D (channels_last; padding valid/same, strides, dilation_rate, "
    "the same options as LSTM), "
    "Bidirectional (merge_mode concat/sum/mul/ave/None), Dense, TimeDistributed(Dense, Flatten, "
    "Reshape, Dropout, Activation, normalisation), Conv1D (kernel_size 1, or padding='causal' "
    "with stride 1), LayerNormalization, BatchNormalization, Embedding (on the model input), "
    "Masking (a no-op on unmasked data), Dropout, SpatialDropout1D, GaussianNoise, "
    "GaussianDropout, AlphaDropout, ActivityRegularization, Identity, Activation, ReLU, "
    "LeakyReLU, ELU, Softmax (last axis), Flatten/Reshape per frame, Concatenate (last axis), "
    "Add, Subtract, Multiply, Average, Maximum, Minimum, GlobalAveragePooling1D / "
    "GlobalMaxPooling1D (over time, streamed as running mean/max), MultiHeadAttention and "
    "Attention (dot scores) over per-step values: streamed with use_causal_mask=True, "
    "run() only without it; a single last-step query (1, F) over every step streams")
