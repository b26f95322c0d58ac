"""NVIDIA's `.nemo` checkpoints: reading one (a tar of model_config.yaml and model_weights.ckpt),
checking a TitaNet config's structure and sizes before anything is built, and downloading TitaNet-Large."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
import yaml

from ..errors import WeightsUnavailable, short
from .hub import WEIGHTS, cache_dir, download_url, install_file, read_tar_member, sha256_file

HF_REPO = "nvidia/speakerverification_en_titanet_large"
HF_FILE = "speakerverification_en_titanet_large.nemo"
CACHE_NAME = WEIGHTS["titanet-large"].cache_name
# Largest members a TitaNet .nemo may hold: the Large checkpoint is ~100 MB, its config a few KB.
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 1 << 30


def first_of(v: object) -> object:
    """A value NeMo's config may give as a one-item list (kernel, dilation, stride)."""
    return v[0] if isinstance(v, (list, tuple)) else v


# Keys in a .nemo state dict that are not part of the embedding path.
IGNORED_PREFIXES = ("decoder.final.", "loss.", "eval_loss.", "_accuracy.", "spec_augmentation.")


def read_nemo(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model config, state dict) of a .nemo archive (tar, optionally gzip-compressed)."""
    try:
        cfg = yaml.safe_load(read_tar_member(path, "model_config.yaml", MAX_CONFIG_BYTES))
        state = torch.load(
            io.BytesIO(read_tar_member(path, "model_weights.ckpt", MAX_WEIGHTS_BYTES)),
            map_location="cpu",
            weights_only=True,
        )
    except WeightsUnavailable:
        raise
    except Exception as e:  # tarfile.ReadError, YAML errors, pickle errors from a foreign file
        raise WeightsUnavailable(f"{path}: not a readable .nemo archive ({type(e).__name__}: {e})") from None
    if not isinstance(cfg, dict) or not {"preprocessor", "encoder", "decoder"} <= set(cfg):
        raise WeightsUnavailable(f"{path}: model_config.yaml is not a TitaNet/speaker-model config")
    return cfg, state


# Sane bounds for a TitaNet config, checked before anything is allocated: TitaNet-Large has
# 3072 channels, kernels up to 41, 5 blocks of up to 3 repeats and ~25 M parameters, so a config
# far beyond these (a hostile or broken file) would only try to allocate gigabytes.
_MAX_CHANNELS = 8192
_MAX_KERNEL = 1024
_MAX_REPEAT = 32
_MAX_BLOCKS = 64
_MAX_FEATURES = 1024
_MAX_N_FFT = 16384
_MAX_PARAMETERS = 200_000_000


def _bounded_int(value: object, what: str, lo: int, hi: int, path: object) -> int:
    v = first_of(value)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise WeightsUnavailable(
            f"{path}: model_config.yaml {what} must be a whole number in [{lo}, {hi}], got {short(v)}"
        )
    return v


def check_config(cfg: dict, path: object = "<config>") -> int:
    """Check a TitaNet model config's structure and sizes before building it; returns the
    estimated parameter count. Raises WeightsUnavailable naming the key that is missing or too large."""
    try:
        pre, enc, dec = (cfg[k] for k in ("preprocessor", "encoder", "decoder"))
        if not all(isinstance(x, dict) for x in (pre, enc, dec)):
            raise TypeError("preprocessor, encoder and decoder must be mappings")
        _bounded_int(pre.get("n_fft", 512), "preprocessor.n_fft", 16, _MAX_N_FFT, path)
        _bounded_int(pre.get("features", 80), "preprocessor.features", 1, _MAX_FEATURES, path)
        _bounded_int(pre.get("sample_rate", 16000), "preprocessor.sample_rate", 8000, 48000, path)
        for key in ("window_size", "window_stride"):
            v = pre.get(key, 0.01)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.001 <= v <= 0.1:
                raise WeightsUnavailable(
                    f"{path}: model_config.yaml preprocessor.{key} must be in [0.001, 0.1] s, got {short(v)}"
                )
        cin = _bounded_int(enc["feat_in"], "encoder.feat_in", 1, _MAX_FEATURES, path)
        blocks = enc["jasper"]
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= _MAX_BLOCKS:
            raise WeightsUnavailable(f"{path}: model_config.yaml encoder.jasper must list 1 to {_MAX_BLOCKS} blocks")
        params = 0
        for i, b in enumerate(blocks):
            cout = _bounded_int(b["filters"], f"encoder.jasper[{i}].filters", 1, _MAX_CHANNELS, path)
            kernel = _bounded_int(b["kernel"], f"encoder.jasper[{i}].kernel", 1, _MAX_KERNEL, path)
            repeat = _bounded_int(b.get("repeat", 1), f"encoder.jasper[{i}].repeat", 1, _MAX_REPEAT, path)
            _bounded_int(b.get("dilation", 1), f"encoder.jasper[{i}].dilation", 1, _MAX_KERNEL, path)
            params += cin * kernel + cin * cout + repeat * (cout * kernel + cout * cout) + 2 * cout * cout
            cin = cout
        _bounded_int(enc.get("se_reduction_ratio", 8), "encoder.se_reduction_ratio", 1, _MAX_CHANNELS, path)
        att = _bounded_int(dec.get("attention_channels", 128), "decoder.attention_channels", 1, _MAX_CHANNELS, path)
        emb = _bounded_int(dec.get("emb_sizes", 192), "decoder.emb_sizes", 1, _MAX_CHANNELS, path)
        params += 3 * cin * att + att * cin + 2 * cin * emb
    except (KeyError, TypeError, AttributeError) as e:
        raise WeightsUnavailable(
            f"{path}: model_config.yaml is missing or has a malformed TitaNet key "
            f"({type(e).__name__}: {short(str(e), 60)})"
        ) from None
    if params > _MAX_PARAMETERS:
        raise WeightsUnavailable(
            f"{path}: model_config.yaml describes a network of about {params / 1e6:.0f} M "
            f"parameters (more than {_MAX_PARAMETERS // 1_000_000} M); not a TitaNet checkpoint"
        )
    return params


def titanet_weights_at_hand() -> Path | None:
    """The cached TitaNet-Large, if present (its recorded sha256 is checked when it is loaded)."""
    p = cache_dir() / CACHE_NAME
    return p if p.is_file() else None


def download_titanet(dest: Path | None = None, urls: list[str] | None = None, timeout: float = 30.0) -> Path:
    """Fetch TitaNet-Large into the cache: huggingface_hub if installed, else direct URLs (HF, NGC).

    The real checkpoint's hash is not pinned here (it cannot be checked offline); the sha256
    of what was downloaded is recorded beside it (`.sha256`) and `hub.weights_path` checks it
    on every later load.
    """
    dest = dest or cache_dir() / CACHE_NAME
    if dest.is_file():
        return dest
    errors = []
    if urls is None:
        try:
            from huggingface_hub import hf_hub_download  # optional

            install_file(Path(hf_hub_download(HF_REPO, HF_FILE)), dest)
            _record_sha(dest)
            return dest
        except ImportError:
            pass
        except Exception as e:  # network errors, gated repos ...
            errors.append(f"huggingface_hub: {type(e).__name__}")
        urls = list(WEIGHTS["titanet-large"].urls)
    for url in urls:
        try:
            download_url(url, dest, timeout=timeout)
            read_nemo(dest)  # refuse to cache something that is not a .nemo
            _record_sha(dest)
            return dest
        except Exception as e:
            dest.unlink(missing_ok=True)
            errors.append(f"{url}: {type(e).__name__}: {e}")
    raise WeightsUnavailable("could not download TitaNet-Large (" + "; ".join(errors)[:400] + ")")


def _record_sha(path: Path) -> None:
    from ..files import atomic_write

    atomic_write(Path(str(path) + ".sha256"), sha256_file(path) + "\n")
