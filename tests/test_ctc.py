"""lstm_infer.ctc: greedy decoding against a hand decode of torch log_softmax outputs, and
prefix beam search against brute-force enumeration of every alignment on small alphabets
(exact labelling probabilities: float64 sums, compared within 1e-9)."""
import itertools

import numpy as np
import pytest

from lstm_infer.ctc import GreedyCTC, beam_search, beam_search_hypotheses, greedy_decode


def _collapse(path, blank):
    out, prev = [], None
    for k in path:
        if k != prev and k != blank:
            out.append(k)
        prev = k
    return tuple(out)


def _brute_force(lp, blank):
    """Labelling -> log P(labelling): sum over all V**T alignments."""
    T, V = lp.shape
    probs = {}
    for path in itertools.product(range(V), repeat=T):
        p = np.exp(sum(lp[t, k] for t, k in enumerate(path)))
        lab = _collapse(path, blank)
        probs[lab] = probs.get(lab, 0.0) + p
    return probs


def _random_log_probs(rng, T, V, sharp=2.0):
    z = rng.normal(size=(T, V)) * sharp
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# ---- greedy -------------------------------------------------------------------------
def _hand_decode(lp, blank):
    """Best path written out step by step: argmax, drop repeats, drop blanks."""
    out, prev = [], -1
    for t in range(lp.shape[0]):
        k = max(range(lp.shape[1]), key=lambda j: lp[t, j])
        if k != prev and k != blank:
            out.append(k)
        prev = k
    return out


@pytest.mark.parametrize("blank", [0, 4])
def test_greedy_matches_hand_decode_of_torch_log_softmax(blank):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(blank)
    logits = torch.randn(3, 40, 5, generator=g) * 2
    lp = torch.nn.functional.log_softmax(logits, dim=-1).numpy()
    for b in range(lp.shape[0]):
        want = _hand_decode(lp[b], blank)
        assert list(greedy_decode(lp[b], blank=blank)) == want
        assert list(greedy_decode(logits[b].numpy(), blank=blank)) == want  # argmax unchanged
        dec = GreedyCTC(blank=blank)
        streamed = [tok for row in lp[b] for tok in dec.push(row)]  # step by step, state kept
        assert streamed == want
        dec.reset()
        assert dec.push_many(lp[b, :17]) + dec.push_many(lp[b, 17:]) == want


def test_greedy_emits_on_change_and_keeps_state_across_calls():
    eye = np.eye(3)
    dec = GreedyCTC(blank=0, charset="-ab")
    assert dec.push(eye[1]) == ["a"]
    assert dec.push(eye[1]) == []          # repeat: nothing
    assert dec.push(eye[0]) == []          # blank
    assert dec.push(eye[1]) == ["a"]       # a blank separated the two a's
    assert dec.push(eye[2]) == ["b"]
    dec.reset()
    assert dec.push(eye[2]) == ["b"]       # after reset the previous b is forgotten
    assert greedy_decode(eye[[1, 1, 2, 0, 2, 1]], charset="ab") == "abba"  # V-1 entries


def test_greedy_decodes_model_outputs():
    """Over run() outputs of a model (random LSTM + Linear head, 4 classes)."""
    import os
    import tempfile

    import lstm_infer
    from builders import stacked

    with tempfile.TemporaryDirectory() as d:
        stacked(os.path.join(d, "m.lstm"), "LSTM", 3, 6, out=4, seed=3)
        m = lstm_infer.load(os.path.join(d, "m.lstm"))
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    Y = m.run(X)
    s, dec = m.stream(), GreedyCTC()
    streamed = [tok for x in X for tok in dec.push(s.step(x))]
    assert streamed == list(greedy_decode(Y)) == _hand_decode(Y, 0)


def test_greedy_bad_input():
    with pytest.raises(ValueError, match="blank=5"):
        greedy_decode(np.zeros((3, 4)), blank=5)
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        greedy_decode(np.zeros(4))
    dec = GreedyCTC()
    dec.push(np.zeros(4))
    with pytest.raises(ValueError, match="expected 4 classes"):
        dec.push(np.zeros(5))
    with pytest.raises(ValueError, match="charset has 2 entries"):
        greedy_decode(np.zeros((3, 4)), charset="ab")


# ---- beam search --------------------------------------------------------------------
@pytest.mark.parametrize("T,V,blank,seed", [(4, 3, 0, 0), (5, 3, 2, 1), (4, 4, 0, 2), (6, 2, 1, 3)])
def test_wide_beam_is_exact(T, V, blank, seed):
    lp = _random_log_probs(np.random.default_rng(seed), T, V, sharp=0.7)
    truth = _brute_force(lp, blank)
    hyps = beam_search_hypotheses(lp, beam_width=10_000, blank=blank)
    assert len(hyps) == len(truth)
    for labels, logp in hyps:
        assert abs(logp - np.log(truth[labels])) < 1e-9
    best = max(truth, key=truth.get)
    assert beam_search(lp, beam_width=10_000, blank=blank) == best
    assert beam_search(np.exp(lp), beam_width=10_000, blank=blank, scores="probs") == best
    assert beam_search(lp * 1.0 + 3.0, beam_width=10_000, blank=blank, scores="logits") == best


def test_beam_beats_greedy_where_alignments_add_up():
    """Best path says blank; summing alignments says 'a' (the classic CTC example)."""
    p = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])  # blank, a, b
    assert greedy_decode(p) == ()
    # P("") = 0.36, P("a") = 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64
    assert beam_search(p, beam_width=4, scores="probs") == (1,)
    hyps = beam_search_hypotheses(p, beam_width=4, scores="probs")
    assert abs(np.exp(hyps[0][1]) - 0.64) < 1e-12 and abs(np.exp(hyps[1][1]) - 0.36) < 1e-12


def test_narrow_beam_keeps_at_most_beam_width():
    lp = _random_log_probs(np.random.default_rng(5), 8, 4)
    assert len(beam_search_hypotheses(lp, beam_width=3)) <= 3
    assert len(beam_search_hypotheses(lp, beam_width=10_000, top_k=1)) >= 1


def test_lexicon_restricts_to_word_sequences():
    charset = "_ab "  # blank, a, b, space
    rng = np.random.default_rng(7)
    words = {"ab", "b"}
    for trial in range(3):
        lp = _random_log_probs(rng, 5, 4, sharp=0.8)
        truth = _brute_force(lp, 0)

        def allowed(lab):
            text = "".join(charset[k] for k in lab)
            return all(w in words for w in text.split(" ") if w)

        best = max((lab for lab in truth if allowed(lab)), key=truth.get)
        want = "".join(charset[k] for k in best)
        assert beam_search(lp, 10_000, lexicon=words, charset=charset) == want
        for text, _ in beam_search_hypotheses(lp, 10_000, lexicon=words, charset=charset):
            assert all(w in words for w in text.split(" ") if w)


def test_character_set_restricts_classes():
    charset = "_abc"
    lp = _random_log_probs(np.random.default_rng(9), 5, 4, sharp=0.8)
    truth = _brute_force(lp, 0)
    best = max((lab for lab in truth if 3 not in lab), key=truth.get)
    got = beam_search(lp, 10_000, lexicon={"a", "b"}, charset=charset)
    assert got == "".join(charset[k] for k in best) and "c" not in got


def test_beam_bad_input():
    lp = _random_log_probs(np.random.default_rng(0), 3, 3)
    with pytest.raises(ValueError, match="scores must be one of"):
        beam_search(lp, scores="softmax")
    with pytest.raises(ValueError, match="positive values"):
        beam_search(lp + 5)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        beam_search(lp, scores="probs")
    with pytest.raises(ValueError, match="needs a charset"):
        beam_search(lp, lexicon={"ab"})
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(lp, beam_width=0)
    with pytest.raises(ValueError, match="NaN"):
        beam_search(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="satisfies the lexicon"):
        beam_search(np.array([[0.0, 1.0, 0.0]]), scores="probs", lexicon={"bb"}, charset="_ab")
