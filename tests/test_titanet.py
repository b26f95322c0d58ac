"""TitaNet: parity with NeMo on a committed random checkpoint, .nemo loading, download."""

import http.server
import io
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from diarize.models.hub import WeightsUnavailable
from diarize.models.nemo import download_titanet, read_nemo
from diarize.models.titanet import load_titanet

FIX = Path(__file__).parent / "fixtures"
NEMO = FIX / "titanet_tiny.nemo"  # made by `benchmarks/parity/nemo_parity.py make` with nemo_toolkit 3.0.0


def test_parity_with_nemo_reference_outputs():
    """Features and embeddings match what NeMo computed for the same checkpoint and audio."""
    model = load_titanet(NEMO)
    ref = np.load(FIX / "titanet_tiny_ref.npz")
    for i in range(len(ref["embeddings"])):
        x = torch.from_numpy(ref[f"audio{i}"])[None]
        feats, n = model.features(x)
        f_ref = ref[f"features{i}"]
        assert int(n[0]) == f_ref.shape[1] == len(ref[f"audio{i}"]) // 160  # NeMo 3.0 valid frames
        assert np.abs(feats[0, :, : int(n[0])].numpy() - f_ref).max() <= 1e-4
        e, e_ref = model.embed_batch(x)[0].numpy(), ref["embeddings"][i]
        assert np.abs(e - e_ref).max() <= 1e-4 * np.abs(e_ref).max()


def test_batching_and_lengths():
    model = load_titanet(NEMO)
    x = torch.randn(3, 12000) * 0.1
    batch = model.embed_batch(x)
    assert batch.shape == (3, model.embedding_dim)
    torch.testing.assert_close(model.embed_batch(x[2:3]), batch[2:3], atol=1e-5, rtol=1e-4)
    # A shorter item zero-padded in a batch, with its true length, equals the item alone.
    short = x[0, :8000]
    padded = torch.stack([torch.cat([short, torch.zeros(4000)]), x[1]])
    out = model.embed_batch(padded, lengths=torch.tensor([8000, 12000]))
    torch.testing.assert_close(out[0], model.embed_batch(short[None])[0], atol=1e-5, rtol=1e-4)


def test_reflect_convention_counts_one_more_frame():
    model = load_titanet(NEMO, stft_pad="reflect")
    _, n = model.features(torch.randn(1, 16000))
    assert int(n[0]) == 101


def _rewrite_nemo(src: Path, dest: Path, edit, compress: bool = False) -> Path:
    cfg_bytes, state = None, None
    with tarfile.open(src, "r:*") as tar:
        for m in tar.getmembers():
            if m.name.endswith("model_config.yaml"):
                cfg_bytes = tar.extractfile(m).read()
            elif m.name.endswith("model_weights.ckpt"):
                state = torch.load(io.BytesIO(tar.extractfile(m).read()), weights_only=True)
    state = edit(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    with tarfile.open(dest, "w:gz" if compress else "w:") as tar:
        for name, data in (("./model_config.yaml", cfg_bytes), ("./model_weights.ckpt", buf.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def test_gzip_nemo_loads_and_matches(tmp_path):
    gz = _rewrite_nemo(NEMO, tmp_path / "t.nemo", lambda s: s, compress=True)
    with open(gz, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    x = torch.randn(1, 16000) * 0.1
    torch.testing.assert_close(load_titanet(gz).embed_batch(x), load_titanet(NEMO).embed_batch(x))


def test_strict_keys_name_missing_and_unexpected(tmp_path):
    def drop(s):
        s = dict(s)
        del s["decoder.emb_layers.0.1.bias"]
        s["encoder.encoder.9.bogus"] = torch.zeros(1)
        return s

    bad = _rewrite_nemo(NEMO, tmp_path / "bad.nemo", drop)
    with pytest.raises(
        WeightsUnavailable,
        match=r"missing keys \['decoder.emb_layers.0.1.bias'\].*unexpected keys \['encoder.encoder.9.bogus'\]",
    ):
        load_titanet(bad)


def test_not_a_nemo_and_path_traversal(tmp_path):
    junk = tmp_path / "junk.nemo"
    junk.write_bytes(b"not a tar")
    with pytest.raises(WeightsUnavailable, match="not a readable .nemo"):
        load_titanet(junk)
    evil = tmp_path / "evil.nemo"
    with tarfile.open(evil, "w:") as tar:
        info = tarfile.TarInfo("../../model_config.yaml")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"a: 1"))
    with pytest.raises(WeightsUnavailable, match="unsafe"):
        read_nemo(evil)


def test_download_from_local_http_server(tmp_path, monkeypatch):
    served = tmp_path / "srv"
    served.mkdir()
    shutil.copy(NEMO, served / "titanet.nemo")
    (served / "broken.nemo").write_bytes(b"<html>not found</html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(served), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        dest = tmp_path / "cache" / "titanet-large.nemo"
        got = download_titanet(dest, urls=[f"{base}/missing.nemo", f"{base}/broken.nemo", f"{base}/titanet.nemo"])
        assert got == dest and dest.read_bytes() == NEMO.read_bytes()
        import hashlib

        assert Path(str(dest) + ".sha256").read_text().strip() == hashlib.sha256(NEMO.read_bytes()).hexdigest()
        with pytest.raises(WeightsUnavailable, match="could not download"):
            download_titanet(tmp_path / "other.nemo", urls=[f"{base}/broken.nemo"])
        assert not (tmp_path / "other.nemo").exists() and not list((tmp_path).glob("*.part"))
    finally:
        server.shutdown()


def test_diarize_run_with_nemo_path(tmp_path):
    """Plumbing: `diarize run --model PATH.nemo` works end to end (random weights: DER meaningless)."""
    from conftest import DIAR, require_data
    from diarize.cli import main
    from diarize.rttm import read_rttm

    require_data()
    out = tmp_path / "an4.rttm"
    assert (
        main(
            ["run", str(DIAR / "nemo_an4" / "an4_diarize_test.wav"), "--out", str(out), "--model", str(NEMO), "--quiet"]
        )
        == 0
    )
    assert read_rttm(out)["an4_diarize_test"].get_timeline().duration() > 3.0


def test_speed_benchmarks_run_our_side(tmp_path, capsys):
    """`titanet_speed.py ours` and `nemo_e2e.py ours` (the side that needs no NeMo) on the tiny checkpoint:
    the benchmark scripts keep working against the pipeline they time. Speed is not checked here."""
    import json

    from benchmarks.parity import nemo_e2e
    from benchmarks.speed import titanet_speed
    from conftest import require_data

    require_data()

    assert titanet_speed.main(["ours", str(NEMO), "--minutes", "0.2", "--repeats", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ours exact:" in out and "ours fast :" in out
    with np.load(tmp_path / "windows.npz") as d:  # what the NeMo side reads: every scale's windows, embedded
        assert all(len(d[f"emb{i}"]) == len(d[f"starts{i}"]) > 0 for i in range(5))

    assert nemo_e2e.main(["build", "--minutes", "0.3", "--out", str(tmp_path)]) == 0
    wav = tmp_path / "conv_0.3min.wav"
    assert nemo_e2e.main(["ours", str(wav), str(NEMO), "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["side"] == "ours" and len(result["runs_s"]) == 1 and result["speakers"] >= 1
