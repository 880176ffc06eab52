"""The numba.cuda path: `m.streams(n, device="cuda")` and `m.run(X, device="cuda")`.

Imported only when device="cuda" is asked for (lstm_infer/model.py), so `import lstm_infer`
and the CPU path never import numba.cuda. The device runs the same int64 program and
float32 weight arena as the CPU interpreter (lstm_infer/plan.py):

- `device.py`: finds numba.cuda and a usable GPU (or numba's simulator), else one clear
  DeviceUnavailableError; the ops that have device kernels, else UnsupportedOnDeviceError;
- `device_math.py`: scalar device functions (the CPU cells' fast_tanh, gate activations,
  the Activation and Binary kinds), the same formulas as lstm_infer/kernels and ops;
- `kernels.py`: one device function per op (threads of a block over output units) and the
  interpreter kernels: one launch per step for all streams of a pool (`step_kernel`), one
  launch for a whole batch of sequences (`run_kernel`, W_hh in shared memory), one launch
  for a padded batch or a model with reverse layers (`seq_kernel`);
- `step_ops.py`: the cheap per-step ops (Embedding, Gather, Reduce, Conv1d, TimeReduce,
  History), threads passed in, so they sit outside kernels.py;
- `staging.py` (numpy only): which W_hh matrices run_kernel keeps in shared memory, and
  the program's segments for seq_kernel;
- `pool.py`: DeviceStreamPool and run_on_device: weights uploaded once per model, state
  resident on the device, copied back only for outputs and get_state.
"""
