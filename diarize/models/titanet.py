"""TitaNet (Koluguri et al., ICASSP 2022) speaker embeddings, natively in PyTorch, loading
NVIDIA's `.nemo` checkpoints (Large, Medium or Small: the architecture is read from the
checkpoint's own model_config.yaml).

Front end: NeMo 3.0's mel spectrogram by default (zero-padded centred STFT, floor(L/160)
valid frames). `stft_pad="reflect"` gives NeMo 1.x's convention (reflect padding,
floor(L/160) + 1 valid frames), which is what TitaNet was trained with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsUnavailable, short
from .base import autocast_to, check_spans, span_batches
from .features import MelFrontEnd
from .hub import weights_path
from .nemo import IGNORED_PREFIXES, check_config, first_of, read_nemo


# --------------------------------------------------------------------------- encoder
class MaskedConv1d(nn.Module):
    """Conv1d that zeroes frames past each item's length first (NeMo's `conv_mask`)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(
            cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        # A 1x1 conv maps each frame on its own, so what it does to padded frames never reaches a
        # valid one: only wider kernels need the mask. `pad` None: nothing in the batch is padded.
        if pad is None or self.conv.kernel_size[0] == 1:
            return self.conv(x)
        return self.conv(x.masked_fill(pad, 0.0))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        # Squeeze over valid frames only, in fp32 (as NeMo does under autocast).
        with torch.autocast(x.device.type, enabled=False):
            x = x.float() if pad is None else x.float().masked_fill(pad, 0.0)
            s = x.sum(-1) / lengths[:, None].float()
            g = torch.sigmoid(self.fc(s))
            return x * g.unsqueeze(-1)


@dataclass
class BlockSpec:
    cin: int
    cout: int
    kernel: int
    repeat: int
    dilation: int
    residual: bool
    se: bool


class JasperBlock(nn.Module):
    """repeat x [depthwise -> pointwise -> BN (-> ReLU)], SE, + 1x1 residual, ReLU.

    Children are numbered like NeMo's `mconv` list so checkpoint keys load as they are.
    """

    def __init__(self, spec: BlockSpec, se_reduction: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin = spec.cin
        for r in range(spec.repeat):
            layers += [
                MaskedConv1d(cin, cin, spec.kernel, groups=cin, dilation=spec.dilation),
                MaskedConv1d(cin, spec.cout, 1),
                nn.BatchNorm1d(spec.cout, eps=1e-3, momentum=0.1),
            ]
            if r < spec.repeat - 1:
                layers += [nn.ReLU(inplace=True), nn.Dropout(0.0)]
            cin = spec.cout
        if spec.se:
            layers.append(SqueezeExcite(spec.cout, se_reduction))
        self.mconv = nn.ModuleList(layers)
        self.res = None
        if spec.residual:
            self.res = nn.ModuleList(
                [
                    nn.ModuleList(
                        [MaskedConv1d(spec.cin, spec.cout, 1), nn.BatchNorm1d(spec.cout, eps=1e-3, momentum=0.1)]
                    )
                ]
            )

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.mconv:
            if isinstance(layer, MaskedConv1d):
                out = layer(out, pad)
            elif isinstance(layer, SqueezeExcite):
                out = layer(out, pad, lengths).to(x.dtype)
            else:
                out = layer(out)
        if self.res is not None:
            conv, bn = self.res[0]
            out = out + bn(conv(x, pad))
        return F.relu(out)


# --------------------------------------------------------------------------- decoder
class TDNNModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_layer = nn.Conv1d(cin, cout, 1)
        self.activation = nn.ReLU()
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.activation(self.conv_layer(x)))


def _masked_stats(h: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = (w * h).sum(-1)
    std = (w * (h - mean.unsqueeze(-1)).pow(2)).sum(-1).clamp(min=1e-10).sqrt()
    return mean, std


class AttentivePool(nn.Module):
    """Attentive statistics pooling with global context (ECAPA-style), per-channel attention."""

    def __init__(self, channels: int, attention_channels: int = 128):
        super().__init__()
        self.attention_layer = nn.Sequential(
            TDNNModule(3 * channels, attention_channels), nn.Tanh(), nn.Conv1d(attention_channels, channels, 1)
        )

    def forward(self, h: torch.Tensor, valid: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        w = valid.to(h.dtype) / lengths.to(h.dtype)[:, None, None]
        mean, std = _masked_stats(h, w)
        t = h.shape[-1]
        attn = self.attention_layer(
            torch.cat([h, mean.unsqueeze(-1).expand(-1, -1, t), std.unsqueeze(-1).expand(-1, -1, t)], dim=1)
        )
        alpha = torch.softmax(attn.masked_fill(~valid, float("-inf")), dim=-1)
        mean, std = _masked_stats(h, alpha)
        return torch.cat([mean, std], dim=1).unsqueeze(-1)


# --------------------------------------------------------------------------- model
class TitaNet(nn.Module):
    """SpeakerEmbedder: 16 kHz waveforms -> raw (not normalised) TitaNet embeddings."""

    def __init__(self, cfg: dict, name: str = "titanet-large", stft_pad: str = "constant"):
        super().__init__()
        self.name = name
        pre, enc, dec = cfg["preprocessor"], cfg["encoder"], cfg["decoder"]
        self.sample_rate = int(pre.get("sample_rate", cfg.get("sample_rate", 16000)))
        self.preprocessor = nn.Module()
        self.preprocessor.featurizer = MelFrontEnd(
            sample_rate=self.sample_rate,
            window_size=pre.get("window_size", 0.025),
            window_stride=pre.get("window_stride", 0.01),
            n_fft=pre.get("n_fft", 512),
            features=pre.get("features", 80),
            preemph=pre.get("preemph", 0.97) or 0.0,
            normalize=pre.get("normalize", "per_feature"),
            stft_pad=stft_pad,
        )
        if str(pre.get("window", "hann")) != "hann" or pre.get("log", True) is False:
            raise WeightsUnavailable("unsupported TitaNet preprocessor (only hann window + log mel)")
        if str(enc.get("activation", "relu")) != "relu":
            raise WeightsUnavailable(f"unsupported encoder activation {enc.get('activation')!r}")
        se_reduction = int(enc.get("se_reduction_ratio", 8))
        cin = int(enc["feat_in"])
        blocks = []
        for b in enc["jasper"]:
            cout = int(b["filters"])
            spec = BlockSpec(
                cin,
                cout,
                int(first_of(b["kernel"])),
                int(b.get("repeat", 1)),
                int(first_of(b.get("dilation", 1))),
                bool(b.get("residual", False)),
                bool(b.get("se", False)),
            )
            if not b.get("separable", False) or int(first_of(b.get("stride", 1))) != 1:
                raise WeightsUnavailable("unsupported TitaNet encoder block (need separable, stride 1)")
            blocks.append(JasperBlock(spec, se_reduction))
            cin = cout
        self.encoder = nn.Module()
        self.encoder.encoder = nn.Sequential(*blocks)
        if str(dec.get("pool_mode", "attention")) != "attention":
            raise WeightsUnavailable(f"unsupported pool_mode {dec.get('pool_mode')!r}")
        emb = int(first_of(dec.get("emb_sizes", 192)))
        self.embedding_dim = emb
        self.decoder = nn.Module()
        self.decoder._pooling = AttentivePool(cin, int(dec.get("attention_channels", 128)))
        self.decoder.emb_layers = nn.ModuleList([nn.Sequential(nn.BatchNorm1d(2 * cin), nn.Conv1d(2 * cin, emb, 1))])
        self.autocast_dtype: torch.dtype | None = None  # set to torch.float16/bfloat16 for GPU autocast
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
        return self.preprocessor.featurizer(wav, lengths)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        feats, n = self.features(wav, lengths)
        valid = (torch.arange(feats.shape[-1], device=feats.device)[None] < n[:, None]).unsqueeze(1)
        with autocast_to(feats.device, self.autocast_dtype):
            h = self._encode(feats, valid, n)
            pooled = self.decoder._pooling(h, valid, n)
            emb = self.decoder.emb_layers[0](pooled)
        return emb.squeeze(-1).float()

    def _encode(self, feats: torch.Tensor, valid: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        pad = None if bool(valid.all()) else ~valid  # an unpadded batch needs no masks
        h = feats
        for block in self.encoder.encoder:
            h = block(h, pad, n)
        return h

    # ------------------------------------------------------------------ fast mode
    # Region-level encoding (`embeddings.embed_scales_fast`): the encoder runs once over a
    # long stretch of audio and every window is pooled from the shared frames. Compared with
    # `embed_batch` on the window alone, the per-feature mel normalisation and the SE blocks'
    # global squeeze are taken over the whole input (a chunk of a speech region) instead of the
    # window, and edge frames see their real neighbours instead of zero padding. A window that
    # is the whole input gets exactly its `embed_batch` embedding.
    frame_hop = 160  # samples per encoder frame (10 ms); frame j is centred on sample 160 j
    chunk_align = frame_hop  # no grid coarser than the frames
    local_context = False  # the SE squeeze is over the whole input

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Valid encoder frames of an input of `num_samples` samples (what `embed_batch` pools over)."""
        return self.preprocessor.featurizer.valid_frames(num_samples)

    @torch.inference_mode()
    def encode_frames(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, local_context_s: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) waveforms -> (B, C, F) encoder frames (C = 3072 for Large) and (B,) valid frame counts.

        Frames past an item's count are not meaningful and must not be pooled. TitaNet has no local
        context mode (`local_context` is False): `local_context_s` must be None.
        """
        if local_context_s is not None:
            raise ValueError("TitaNet has no local context mode (local_context_s must be None)")
        wav = waveforms.to(self.device, torch.float32)
        if wav.shape[-1] < 2 * self.preprocessor.featurizer.hop:
            raise ValueError(f"TitaNet needs at least {2 * self.preprocessor.featurizer.hop} samples per input")
        feats, n = self.features(wav, None if lengths is None else lengths.to(self.device))
        valid = (torch.arange(feats.shape[-1], device=feats.device)[None] < n[:, None]).unsqueeze(1)
        with autocast_to(feats.device, self.autocast_dtype):
            h = self._encode(feats, valid, n)
        return h.float(), n

    @torch.inference_mode()
    def pool_frames(
        self, frames: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, max_window_frames: int | None = None
    ) -> torch.Tensor:
        """Embeddings of the frame spans [starts[i], ends[i]) of one (C, F) frame sequence -> (N, D).

        Attentive statistics pooling as in `AttentivePool`, computed for many windows at once:
        windows are sorted by length and gathered into batches of at most `max_window_frames`
        window-frames (default 1024 on CPU, 16384 on accelerators); only batches that mix
        lengths are padded and masked. The attention network's first 1x1 conv is linear in
        [h; mean; std], so its frame part is computed once per frame and only the window's
        context statistics are added per window. The rest (tanh, second conv, softmax over the
        window's frames, weighted statistics) is per window-frame and, on CPU, bound by memory
        traffic, so it is laid out for few passes over the data (benchmarks/RESULTS.md).
        """
        h = frames.to(self.device, torch.float32)
        starts, ends = check_spans(starts, ends, h.shape[-1], h.device)
        if len(starts) == 0:
            return torch.zeros(0, self.embedding_dim, device=h.device)
        if max_window_frames is None:
            max_window_frames = 1024 if h.device.type == "cpu" else 16384
        c = h.shape[0]
        tdnn = self.decoder._pooling.attention_layer[0]
        w1 = tdnn.conv_layer.weight[:, :, 0]  # (A, 3C): columns for [h; mean; std]
        # Frames centred on their channel means over the sequence: prefix sums stay small, and the
        # weighted variance below can be taken in one pass (E[h^2] - E[h]^2) without cancellation
        # (within 5e-7 of a float64 reference).
        shift = h.mean(-1)
        hc = h - shift[:, None]  # (C, F)
        # Uniform (context) statistics of every span at once, from prefix sums.
        s1 = F.pad(hc.cumsum(-1), (1, 0))
        s2 = F.pad((hc * hc).cumsum(-1), (1, 0))
        n = (ends - starts).float()
        mean = (s1[:, ends] - s1[:, starts]) / n
        std = ((s2[:, ends] - s2[:, starts]) / n - mean.pow(2)).clamp(min=1e-10).sqrt()
        ctx = torch.cat([mean + shift[:, None], std]).T @ w1[:, c:].T + tdnn.conv_layer.bias  # (N, A)
        a_frames = hc.T @ w1[:, :c].T + shift @ w1[:, :c].T  # (F, A), once per frame
        stats = torch.empty(2 * c, len(starts), device=h.device)
        span = (ends - starts).cpu().numpy()  # batches planned on the host: no per-window device reads
        with autocast_to(h.device, self.autocast_dtype):
            for batch in span_batches(span, max_window_frames):
                sel = torch.from_numpy(batch).to(h.device)
                mean, std = self._attend(hc, a_frames, ctx[sel], starts[sel], ends[sel], int(span[batch[-1]]))
                stats[:c, sel] = mean + shift[:, None]
                stats[c:, sel] = std
            emb = self.decoder.emb_layers[0](stats.T.unsqueeze(-1))
        return emb.squeeze(-1).float()

    def _attend(
        self,
        hc: torch.Tensor,
        a_frames: torch.Tensor,
        ctx: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention-weighted mean and std (C, B) of the B spans [starts, ends), the longest `width` frames.
        Per-window-frame tensors are (C, B, L): the softmax and the sums run along contiguous frames."""
        tdnn, _, conv2 = self.decoder._pooling.attention_layer
        bn = tdnn.bn
        idx = starts[:, None] + torch.arange(width, device=hc.device)  # (B, L)
        valid = idx < ends[:, None]
        ragged = not bool(valid.all())
        if ragged:
            idx = torch.minimum(idx, ends[:, None] - 1)  # padded with the last frame, masked below
        hg = hc.index_select(1, idx.flatten()).unflatten(1, idx.shape)
        pre = torch.relu(a_frames.index_select(0, idx.flatten()) + ctx.repeat_interleave(width, 0))
        g = torch.tanh(F.batch_norm(pre, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))
        e = torch.addmm(conv2.bias[:, None], conv2.weight[:, :, 0], g.T).float().unflatten(1, idx.shape)  # (C, B, L)
        if ragged:
            e.masked_fill_(~valid, float("-inf"))
        weighted = torch.softmax(e, dim=-1).mul_(hg)
        mean = weighted.sum(-1)
        var = weighted.mul_(hg).sum(-1) - mean * mean
        return mean, var.clamp(min=1e-10).sqrt()

    @torch.inference_mode()
    def embed_batch(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        wav = waveforms.to(self.device, torch.float32)
        if wav.shape[-1] < 2 * self.preprocessor.featurizer.hop:
            raise ValueError(f"TitaNet needs at least {2 * self.preprocessor.featurizer.hop} samples per window")
        return self(wav, None if lengths is None else lengths.to(self.device))


# --------------------------------------------------------------------------- weights
def load_titanet(
    path_or_name: str | os.PathLike = "titanet-large", device: str | torch.device = "cpu", stft_pad: str = "constant"
) -> TitaNet:
    """Load TitaNet from a .nemo path, or by name from the cache (`titanet-large`)."""
    path = Path(path_or_name)
    if str(path_or_name) == "titanet-large":
        path = weights_path("titanet-large", fetch=False)  # checks the sha256 recorded at download
    cfg, state = read_nemo(path)
    check_config(cfg, path)
    try:
        model = TitaNet(cfg, name=_model_name(path), stft_pad=stft_pad)
    except (KeyError, TypeError, ValueError) as e:  # values check_config does not bound (e.g. a bad stft mode)
        raise WeightsUnavailable(
            f"{path}: unsupported TitaNet config ({type(e).__name__}: {short(str(e), 60)})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsUnavailable(f"{path}: model_weights.ckpt is not a mapping of names to tensors")
    state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsUnavailable(
            f"{path}: checkpoint does not match its TitaNet config: "
            f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise WeightsUnavailable(f"{path}: shape mismatch for {bad[:5]}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _model_name(path: Path) -> str:
    stem = path.name.removesuffix(".nemo").lower()
    return "titanet-large" if "large" in stem or stem == "titanet-l" else f"titanet({path.name})"
