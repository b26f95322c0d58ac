"""Speech feature front ends of the embedding models: Kaldi's log mel fbank (CAM++) and NeMo's
normalised log mel spectrogram (TitaNet). Both take (B, N) float waveforms at 16 kHz."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------- Kaldi fbank (CAM++)
def kaldi_mel_banks(
    n_mels: int = 80, n_fft: int = 512, sample_rate: int = 16000, low_freq: float = 20.0, high_freq: float = 0.0
) -> torch.Tensor:
    """Kaldi's triangular mel filters on the mel scale 1127 ln(1 + f/700), shape (n_mels, n_fft//2 + 1).

    Kaldi builds filters over n_fft/2 bins and never uses the Nyquist bin, so its column is zero.
    """
    nyquist = sample_rate / 2
    if high_freq <= 0:
        high_freq += nyquist
    mel = lambda f: 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)  # noqa: E731
    mel_lo, mel_hi = mel(low_freq), mel(high_freq)
    delta = (mel_hi - mel_lo) / (n_mels + 1)
    b = torch.arange(n_mels, dtype=torch.float64).unsqueeze(1)
    left, center, right = mel_lo + b * delta, mel_lo + (b + 1) * delta, mel_lo + (b + 2) * delta
    bins = mel(sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float64)).unsqueeze(0)
    up = (bins - left) / (center - left)
    down = (right - bins) / (right - center)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(fb, (0, 1)).float()


class KaldiFbank(nn.Module):
    """80-bin log mel fbank with Kaldi's defaults (25/10 ms, povey window, pre-emphasis 0.97,
    DC removal, power spectrum, snip_edges) followed by per-segment mean normalisation."""

    frame_s, shift_s, preemph = 0.025, 0.010, 0.97  # Kaldi's defaults, as CAM++ was trained

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000):
        super().__init__()
        self.frame = int(sample_rate * self.frame_s)
        self.shift = int(sample_rate * self.shift_s)
        self.n_fft = 1 << (self.frame - 1).bit_length()
        n = torch.arange(self.frame, dtype=torch.float64)
        povey = (0.5 - 0.5 * torch.cos(2 * math.pi * n / (self.frame - 1))) ** 0.85
        self.register_buffer("window", povey.float(), persistent=False)
        self.register_buffer("mel_fb", kaldi_mel_banks(n_mels, self.n_fft, sample_rate), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.frame else 1 + (num_samples - self.frame) // self.shift

    def forward(
        self, wav: torch.Tensor, cmn_frames: int | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, N) waveforms -> (B, T, n_mels) mean-normalised log mel features.

        The mean is over all T frames, or (fast mode) over a centred sliding window of `cmn_frames`.
        `mask` (B, 1, T), 1 on an item's own frames: zero-padded rows of a batch get the features of
        their unpadded selves, and 0 past their ends (the zero padding the first convolution sees).
        """
        # float64 for the spectrum: low-energy mel bins lose ~1e-3 in log domain in float32.
        frames = wav.double().unfold(-1, self.frame, self.shift)  # (B, T, frame)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # Kaldi: x[-1] := x[0]
        frames = (frames - self.preemph * prev) * self.window.double()
        power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)
        feats = torch.log(torch.clamp(power @ self.mel_fb.double().T, min=torch.finfo(torch.float32).eps))
        if mask is not None:
            m = mask.transpose(1, 2).double()  # (B, T, 1)
            mean = (
                (feats * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
                if cmn_frames is None
                else sliding_mean(feats.transpose(1, 2), cmn_frames, mask.double()).transpose(1, 2)
            )
            return ((feats - mean) * m).float()
        if cmn_frames is not None:
            return (feats - sliding_mean(feats.transpose(1, 2), cmn_frames).transpose(1, 2)).float()
        return (feats - feats.mean(dim=1, keepdim=True)).float()


def sliding_mean(x: torch.Tensor, frames: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, T) -> centred moving average over `frames` (odd) frames along T, fewer at the edges.

    With `mask` (B, 1, T) the average covers only the masked-in frames (a padded batch row's own).
    Window sums are differences of float64 prefix sums: O(T), where a pooling kernel of k frames costs
    O(k T) (k = 75 in CAM++'s layers: a quarter of fast mode's embedding time), and closer to exact
    than float32 pooling (RESULTS.md)."""
    t = x.shape[-1]
    h = min(frames | 1, 2 * t - 1) // 2
    if h == 0 and mask is None:
        return x

    def window_sums(v: torch.Tensor) -> torch.Tensor:  # sum over frames [i - h, i + h] of each row
        c = v.to(torch.float64).cumsum(-1)
        lead = c.new_zeros(*c.shape[:-1], h + 1)
        c = torch.cat([lead, c, c[..., -1:].expand(*c.shape[:-1], h)], dim=-1)
        return c[..., 2 * h + 1 :] - c[..., :t]

    if mask is None:
        i = torch.arange(t, device=x.device, dtype=torch.float64)
        count = (i + h + 1).clamp(max=t) - (i - h).clamp(min=0)
        return (window_sums(x) / count).to(x.dtype)
    return (window_sums(x * mask) / window_sums(mask).clamp(min=1e-12)).to(x.dtype)


def frame_mask(lengths: torch.Tensor | None, num_frames: int) -> torch.Tensor | None:
    """(B,) valid frame counts -> (B, 1, num_frames) float mask, 1 on each row's own frames (None: all)."""
    if lengths is None:
        return None
    return (torch.arange(num_frames, device=lengths.device)[None] < lengths[:, None]).unsqueeze(1).float()


# --------------------------------------------------------------------------- NeMo mel spectrogram (TitaNet)
class MelFrontEnd(nn.Module):
    """Log-mel features with NeMo's per-feature normalisation. Buffers come from the checkpoint."""

    def __init__(
        self,
        sample_rate: int = 16000,
        window_size: float = 0.025,
        window_stride: float = 0.01,
        n_fft: int = 512,
        features: int = 80,
        preemph: float = 0.97,
        log_guard: float = 2**-24,
        normalize: str = "per_feature",
        stft_pad: str = "constant",
    ):
        super().__init__()
        self.win_length = int(window_size * sample_rate)
        self.hop = int(window_stride * sample_rate)
        self.n_fft = n_fft
        self.preemph = preemph
        self.log_guard = log_guard
        self.normalize = normalize
        if stft_pad not in ("constant", "reflect"):
            raise ValueError("stft_pad must be 'constant' (NeMo 3.0) or 'reflect' (NeMo 1.x)")
        self.stft_pad = stft_pad
        # Persistent like NeMo's, so the checkpoint's exact filterbank and window are used.
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=False))
        self.register_buffer("fb", torch.zeros(1, features, n_fft // 2 + 1))

    def valid_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        n = torch.div(lengths, self.hop, rounding_mode="floor")
        return n if self.stft_pad == "constant" else n + 1

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) float32 -> (B, n_mels, T) features and (B,) valid frame counts."""
        wav = wav.float()
        t = torch.arange(wav.shape[1], device=wav.device)
        wav = torch.cat([wav[:, :1], wav[:, 1:] - self.preemph * wav[:, :-1]], dim=1)
        wav = wav.masked_fill(t[None] >= lengths[:, None], 0.0)
        with torch.autocast(wav.device.type, enabled=False):
            spec = torch.stft(
                wav,
                self.n_fft,
                hop_length=self.hop,
                win_length=self.win_length,
                window=self.window,
                center=True,
                pad_mode=self.stft_pad,
                return_complex=True,
            )
        power = torch.view_as_real(spec).pow(2).sum(-1).sqrt().pow(2)
        mel = torch.log(torch.matmul(self.fb.to(power.dtype), power) + self.log_guard)
        n = self.valid_frames(lengths)
        frames = torch.arange(mel.shape[-1], device=mel.device)
        valid = (frames[None] < n[:, None]).unsqueeze(1)  # (B, 1, T)
        if self.normalize == "per_feature":
            cnt = n.to(mel.dtype)[:, None, None]
            mean = mel.masked_fill(~valid, 0.0).sum(-1, keepdim=True) / cnt
            var = (mel - mean).masked_fill(~valid, 0.0).pow(2).sum(-1, keepdim=True) / (cnt - 1)
            std = torch.nan_to_num(var.sqrt(), nan=0.0) + 1e-5  # NeMo adds the guard to the std
            mel = (mel - mean) / std
        return mel.masked_fill(~valid, 0.0), n
