import numpy as np
import pytest
import torch

from diarize.audio import load_audio
from diarize.models.campplus import CAMPPlus
from diarize.models.features import KaldiFbank, sliding_mean
from diarize.verify import embed_waveform, verification_score

from conftest import SPEAKERS, librispeech_utts, require_data


def test_fbank_matches_kaldi_native_fbank():
    knf = pytest.importorskip("kaldi_native_fbank")
    require_data()
    x = load_audio(SPEAKERS / "librispeech_test-other" / "3331" / "3331-159605-0001.wav")[:40000]
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(16000, x.tolist())
    fb.input_finished()
    raw = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    ref = raw - raw.mean(axis=0, keepdims=True)
    ours = KaldiFbank()(torch.from_numpy(x)[None])[0].numpy()
    assert ours.shape == ref.shape
    err = np.abs(ours - ref)
    # kaldi-native-fbank works in float32: near its log floor (energies ~1e-7, log < -12)
    # its own rounding reaches ~1e-3, so the strict bound applies above that.
    assert err[raw > -12].max() <= 1e-3
    assert err.max() <= 2e-3 and np.median(err) < 1e-5


def test_fbank_frame_count_snips_edges():
    fb = KaldiFbank()
    for n in (400, 559, 560, 16000):
        assert fb(torch.zeros(1, n) + 0.01).shape[1] == fb.num_frames(n) == 1 + (n - 400) // 160


@pytest.mark.parametrize("frames", [1, 3, 4, 75, 151])
@pytest.mark.parametrize("t", [1, 2, 5, 74, 75, 76, 300])
def test_sliding_mean_is_the_average_of_the_frames_around(t, frames):
    # Fast mode's moving average, against averaging each frame's neighbourhood directly.
    g = torch.Generator().manual_seed(t * 1000 + frames)
    x = torch.rand(3, 4, t, generator=g, dtype=torch.float64) + 5.0
    mask = torch.ones(3, 1, t, dtype=torch.float64)
    mask[1, :, (t + 1) // 2 :] = 0  # a padded row: its own frames are the first half
    mask[2, :, 1:] = 0  # one frame of its own
    h = (frames | 1) // 2  # an even count means the next odd one, centred
    for m in (None, mask):
        want = torch.zeros_like(x)
        for i in range(t):
            lo, hi = max(0, i - h), min(t, i + h + 1)
            w = torch.ones(3, 1, hi - lo, dtype=torch.float64) if m is None else m[..., lo:hi]
            count = w.sum(-1)
            want[..., i] = torch.where(count > 0, (x[..., lo:hi] * w).sum(-1) / count.clamp(min=1), 0.0)
        assert torch.allclose(sliding_mean(x, frames, m), want, rtol=1e-12, atol=1e-12)
    # float32 in, float32 out, as the layers use it
    assert sliding_mean(x.float(), frames).dtype == torch.float32


def test_random_model_shapes_and_batch_independence():
    torch.manual_seed(0)
    m = CAMPPlus().eval()
    x = torch.randn(3, 8000) * 0.1
    e = m.embed_batch(x)
    assert e.shape == (3, 192) and e.dtype == torch.float32
    torch.testing.assert_close(m.embed_batch(x[1:2]), e[1:2], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least"):
        m.embed_batch(torch.zeros(1, 100))


def test_folded_batchnorm_gives_the_same_embeddings():
    # Random BatchNorm statistics, so that a fold that skipped or misplaced one would show.
    torch.manual_seed(1)
    m = CAMPPlus().eval()
    for bn in m.modules():
        if isinstance(bn, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            if bn.affine:
                bn.weight.data.uniform_(0.5, 1.5)
                bn.bias.data.uniform_(-0.3, 0.3)
    x = torch.randn(3, 16000) * 0.1
    lengths = torch.tensor([16000, 12000, 8000])
    with torch.inference_mode():
        before = m.embed_batch(x, lengths), m.encode_frames(x, lengths=lengths, local_context_s=1.5)[0]
        m.net.fold_batchnorm()
        after = m.embed_batch(x, lengths), m.encode_frames(x, lengths=lengths, local_context_s=1.5)[0]
    n_bn = sum(isinstance(b, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for b in m.modules())
    assert n_bn == 52 + 3 + 1  # left: the pre-activation ones (dense layers, transits, output)
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-4 * float(b.abs().max()), rtol=1e-4)


def test_real_weights_separate_speakers(campplus):
    """Same-speaker LibriSpeech utterances score higher than different-speaker ones."""
    require_data()
    spk = {
        s: [embed_waveform(campplus, load_audio(p)) for p in librispeech_utts(s)[:3]] for s in ("1998", "3331", "367")
    }
    same = [verification_score(a, b) for v in spk.values() for i, a in enumerate(v) for b in v[i + 1 :]]
    diff = [
        verification_score(a, b) for s1, v1 in spk.items() for s2, v2 in spk.items() if s1 < s2 for a in v1 for b in v2
    ]
    assert min(same) > max(diff)
    assert min(same) > 0.7 > max(diff)  # NeMo's default decision threshold works for CAM++ here
