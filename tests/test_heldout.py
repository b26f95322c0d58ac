"""benchmarks/accuracy/heldout.py: the embedding cache round-trips and re-scoring a clustering variant works from it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.accuracy import heldout
from diarize import pipeline
from diarize.config import ConfigError, WindowConfig, load_config
from diarize.pipeline import Embedded, Speech
from diarize.windows import multiscale_windows


def toy_cached(tmp_path, n_spk=3, turn=6.0, seed=0):
    """A cached conversation without audio: n_spk speakers in turns, embeddings = speaker centroid + noise."""
    rng = np.random.default_rng(seed)
    order = [k % n_spk for k in range(3 * n_spk)]
    regions = np.array([[i * turn, (i + 1) * turn - 0.5] for i in range(len(order))])
    uri = f"toy{n_spk}"
    rttm = tmp_path / f"{uri}.rttm"
    rttm.write_text(
        "".join(
            f"SPEAKER {uri} 1 {s:.3f} {e - s:.3f} <NA> <NA> spk{k} <NA> <NA>\n" for (s, e), k in zip(regions, order)
        )
    )
    scales = multiscale_windows(regions, WindowConfig())
    centroids = rng.standard_normal((n_spk, 32))
    embs = []
    for sc in scales:
        lab = np.asarray(order)[np.searchsorted(regions[:, 0], sc.midpoints, side="right") - 1]
        embs.append((centroids[lab] + 0.3 * rng.standard_normal((len(sc), 32))).astype(np.float32))
    speech = Speech(uri, float(regions[-1, 1] + 1), regions, np.zeros((0, 2)))
    path = tmp_path / f"{uri}.npz"
    heldout.save_cached(path, Embedded(speech, scales, embs, "campplus", "cpu"), "k")
    return heldout.read_cached(heldout.Session(uri, "clean", n_spk, tmp_path / f"{uri}.wav", rttm), path), scales, embs


def test_cache_round_trip(tmp_path):
    """The cache is the pipeline's `Embedded` (save_embedded / load_embedded) plus the key it was made with."""
    c, scales, embs = toy_cached(tmp_path)
    e = c.embedded
    assert [s.window for s in e.scales] == [s.window for s in scales]
    for a, b, ea, eb in zip(e.scales, scales, e.embeddings, embs):
        assert np.array_equal(a.starts, b.starts) and np.array_equal(a.ends, b.ends) and np.array_equal(ea, eb)
    assert e.speech.overlap.shape == (0, 2) and e.speech.uri == c.session.uri and e.model_name == "campplus"
    path = tmp_path / f"{c.session.uri}.npz"
    assert heldout.cached_key(path) == "k"
    heldout.key_path(path).unlink()  # a cache from before the key file (the old format) counts as missing
    assert heldout.cached_key(path) is None


def test_rescore_is_the_pipelines_label_and_assemble(tmp_path):
    """A re-scored hypothesis is what `pipeline.diarize` makes of the same embeddings: `label` + `assemble`."""
    c = toy_cached(tmp_path, 3)[0]
    speech = dataclasses.replace(c.embedded.speech, overlap=np.array([[4.0, 7.0]]))  # where turns 1 and 2 meet
    c = heldout.Cached(c.session, dataclasses.replace(c.embedded, speech=speech))
    cfg = load_config("general")
    expected = pipeline.assemble(c.embedded, pipeline.label(c.embedded, cfg), cfg).annotation
    got = heldout.hypothesis(c, cfg)
    assert got == expected and got.get_overlap().duration() > 0  # the overlap step gave a second speaker


def test_rescore_from_cache_and_overrides(tmp_path):
    sessions = [toy_cached(tmp_path, n, seed=n)[0] for n in (2, 3, 4)]
    cfg = load_config("general")
    rep = heldout.rescore(sessions, cfg)
    assert [r.estimated for r in rep.results] == [2, 3, 4]
    assert heldout.pooled(rep.results, "forgiving")["der"] < 1.0
    text = heldout.format_report(rep)
    assert "| **all** | 3 |" in text and "3/3 = 100 %" in text
    # A variant that merges every cluster (any centroid cosine >= -1) shows up in the counts and the report.
    overrides = ["merge_threshold=-1", "split_threshold=null", "turn_split_threshold=null"]
    merged = heldout.clustering_overrides(cfg, None, overrides)
    assert merged.clustering.merge_threshold == -1 and merged.clustering.split_threshold is None
    assert cfg.clustering.merge_threshold == "auto"  # the original is not changed (auto: the model's value)
    rep2 = heldout.rescore(sessions, merged)
    assert [r.estimated for r in rep2.results] == [1, 1, 1] and "Count errors" in heldout.format_report(rep2)
    y = tmp_path / "v.yaml"
    y.write_text("clustering:\n  merge_threshold: 0.7\n")
    assert heldout.clustering_overrides(cfg, y, []).clustering.merge_threshold == 0.7
    with pytest.raises(ConfigError, match="unknown clustering field"):
        heldout.clustering_overrides(cfg, None, ["no_such_field=1"])


def test_fast_mode_embeddings_have_their_own_cache(tmp_path):
    exact, fast = load_config("exact"), load_config("general")  # region-level ("fast" mode) is the default
    assert heldout.cache_dir(tmp_path, "oracle", "fast") != heldout.cache_dir(tmp_path, "oracle")
    assert heldout.cache_key(fast, "campplus", "oracle") != heldout.cache_key(exact, "campplus", "oracle")
    # A fast-mode setting that changes the embeddings changes the key (the cache is re-embedded).
    wider = load_config("general", ["embedding.fast_context_s=5"])
    assert heldout.cache_key(wider, "campplus", "oracle") != heldout.cache_key(fast, "campplus", "oracle")
    # Exact-mode keys do not depend on fast-mode settings (existing caches stay valid).
    assert heldout.cache_key(load_config("exact", ["embedding.fast_context_s=5"]), "campplus", "oracle") == (
        heldout.cache_key(exact, "campplus", "oracle")
    )


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_is_in_the_cache_key_where_it_applies(monkeypatch, native):
    from diarize.models import base

    monkeypatch.setattr(base, "cpu_has_native_bf16", lambda: native)
    fp32 = load_config("fast", ["embedding.cpu_bf16=false", "vad.pyannote_seg.cpu_bf16=false"])
    for vad in ("oracle", "pyannote-seg"):
        # fp32 keys are those of the caches made before the setting existed
        assert "cpu_bf16" not in heldout.cache_key(fp32, "campplus", vad)
        changed = heldout.cache_key(load_config("fast"), "campplus", vad) != heldout.cache_key(fp32, "campplus", vad)
        assert changed is native
    vad_only = load_config("fast", ["embedding.cpu_bf16=false"])
    assert heldout.cache_key(vad_only, "campplus", "oracle") == heldout.cache_key(fp32, "campplus", "oracle")
    changed = heldout.cache_key(vad_only, "campplus", "pyannote-seg") != heldout.cache_key(
        fp32, "campplus", "pyannote-seg"
    )
    assert changed is native


def test_long_sets_keep_their_sides_speakers():
    """dev-long / test-long (3-6 min) and dev-xl / test-xl (20-40 min) draw from their side's speakers only,
    and the short sets' plans are what they were (the longer sets have their own seeds)."""
    for side in ("dev", "test"):
        short = heldout.plan_set(side)
        assert len(short) == 39 and short[0].uri == f"{side}_00_clean_2spk"
        for kind, count, (lo, hi) in (("long", 8, (180, 360)), ("xl", 3, (1200, 2400))):
            plan = heldout.plan_set(f"{side}-{kind}")
            assert len(plan) == count and all(p.uri.startswith(f"{side}{kind}_") for p in plan)
            assert all(lo <= p.seconds <= hi for p in plan)
            speakers = {s for p in plan for s in p.speakers}
            assert speakers <= set(heldout.SIDES[side])
            assert not speakers & set(heldout.SIDES["test" if side == "dev" else "dev"])
            assert {p.seed for p in plan}.isdisjoint(p.seed for p in short)
