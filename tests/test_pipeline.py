import numpy as np
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from diarize import Diarizer, load_config
from diarize.audio import load_audio
from diarize.rttm import read_rttm

from conftest import DIAR, librispeech_utts, require_data


@pytest.fixture(scope="module")
def diarizer(campplus):
    return Diarizer(load_config("general"), model=campplus)


def build_conversation(speakers, turns=8, turn_s=3.0, pause_s=0.6):
    """Alternate real utterance pieces of different LibriSpeech speakers; exact reference."""
    sr = 16000
    pieces, ref, t = [], Annotation(uri="conv"), 0.0
    utts = {s: [load_audio(p) for p in librispeech_utts(s)[:4]] for s in speakers}
    for i in range(turns):
        spk = speakers[i % len(speakers)]
        src = np.concatenate(utts[spk])
        start = (i // len(speakers)) * int(turn_s * sr)
        x = src[start : start + int(turn_s * sr)]
        pieces += [x, np.zeros(int(pause_s * sr), dtype=np.float32)]
        ref[Segment(t, t + len(x) / sr)] = spk
        t += (len(x) + int(pause_s * sr)) / sr
    return np.concatenate(pieces), ref


def forgiving_der(ref, hyp):
    return DiarizationErrorRate(collar=0.5, skip_overlap=True)(ref, hyp)


@pytest.mark.parametrize(
    "speakers",
    [
        ("367", "3331"),  # counted 3 before the count vote (clustering.nme_vote)
        ("1998", "3331", "367"),
    ],
)
def test_synthetic_conversation_is_separated(diarizer, speakers):
    require_data()
    audio, ref = build_conversation(list(speakers), turns=3 * len(speakers))
    hyp = diarizer.diarize(audio, 16000, oracle_vad=ref)
    assert len(hyp.labels()) == len(speakers)
    assert forgiving_der(ref, hyp) < 0.03
    # System (energy) VAD: the reference marks whole utterance pieces as speech,
    # including their inner pauses, which a VAD rightly leaves out; hence the looser bound.
    res = diarizer.run(audio, 16000)
    assert res.num_speakers == len(speakers)
    assert forgiving_der(ref, res.annotation) < 0.2


def test_two_speakers_separated_with_known_count(diarizer):
    require_data()
    audio, ref = build_conversation(["1998", "3331"], turns=6)
    hyp = diarizer.diarize(audio, 16000, num_speakers=2, oracle_vad=ref)
    assert len(hyp.labels()) == 2
    assert forgiving_der(ref, hyp) < 0.03


def test_known_speaker_count_is_used(diarizer):
    require_data()
    audio, ref = build_conversation(["1998", "3331", "367"], turns=6)
    assert len(diarizer.diarize(audio, 16000, num_speakers=2, oracle_vad=ref).labels()) == 2


@pytest.mark.parametrize("name", ["sample", "dev00"])
def test_real_recording_oracle_vad(diarizer, name):
    require_data()
    wav = next(DIAR.glob(f"*/{name}.wav"))
    ref = read_rttm(wav.with_suffix(".rttm"))[name]
    res = diarizer.run(wav, oracle_vad=ref)
    assert res.annotation.uri == name
    assert set(res.timings) == {"load", "vad", "windows", "embeddings", "clustering", "output"}
    assert forgiving_der(ref, res.annotation) < 0.05


def test_waveform_input_needs_sample_rate(diarizer):
    with pytest.raises(ValueError, match="sample_rate"):
        diarizer.diarize(np.zeros(16000, dtype=np.float32))


def test_silence_gives_empty_annotation_and_warning(diarizer):
    with pytest.warns(UserWarning, match="no speech"):
        ann = diarizer.diarize(np.zeros(16000 * 3, dtype=np.float32), 16000)
    assert len(ann) == 0


def turns(annotation):
    return [(round(s.start, 6), round(s.end, 6), label) for s, _, label in annotation.itertracks(yield_label=True)]


def test_stages_by_hand_equal_diarize(tmp_path):
    """speech -> embed -> label -> assemble, called one by one, is `diarize`; an `Embedded` kept
    (`save_embedded` / `load_embedded`, as a benchmark cache keeps it) and re-labelled under other clustering settings gives what
    `diarize` gives under those settings."""
    import dataclasses
    import pickle

    from diarize import pipeline
    from diarize.config import SpeakerCount

    from conftest import ToyEmbedder

    require_data()
    wav = next(DIAR.glob("*/dev00.wav"))
    cfg, model, count = load_config("general"), ToyEmbedder(), SpeakerCount(max=4)
    whole = pipeline.diarize(pipeline.open_source(wav), model, cfg, speakers=count)
    source = pipeline.open_source(wav)
    found = pipeline.speech(source, cfg)
    embedded = pipeline.embed(source, found, model, cfg)
    parts = pipeline.assemble(embedded, pipeline.label(embedded, cfg, count), cfg)
    assert len(whole.annotation) > 0 and turns(parts.annotation) == turns(whole.annotation)
    assert parts.num_speakers == whole.num_speakers and parts.duration == whole.duration
    assert np.array_equal(parts.regions, whole.regions) and np.array_equal(parts.overlap, whole.overlap)
    assert parts.centroids.keys() == whole.centroids.keys()
    assert all(np.array_equal(parts.centroids[k], whole.centroids[k]) for k in whole.centroids)

    other = dataclasses.replace(cfg, clustering=dataclasses.replace(cfg.clustering, merge_threshold=-1.0))
    assert pickle.loads(pickle.dumps(embedded)).model_name == "toy"
    pipeline.save_embedded(embedded, tmp_path / "dev00.npz")
    kept = pipeline.load_embedded(tmp_path / "dev00.npz")
    assert kept.speech.local is not None and np.array_equal(kept.speech.local.classes, found.local.classes)
    assert kept.speech.found_by == found.found_by == "pyannote-seg"
    rescored = pipeline.assemble(kept, pipeline.label(kept, other, count), other)
    direct = pipeline.diarize(pipeline.open_source(wav), model, other, speakers=count)
    assert rescored.num_speakers == 1 and turns(rescored.annotation) == turns(direct.annotation)


def test_turns_reach_into_the_silence_around_vad_regions_but_not_around_oracle_ones():
    """`vad.turn_pad_s` and `vad.turn_join_s` widen the output's turns, not the regions embedded; a
    reference's own turns (oracle VAD) are left as they are."""
    import dataclasses

    from diarize import pipeline
    from diarize import regions as rg
    from diarize.config import SpeakerCount

    from conftest import ToyEmbedder

    require_data()
    wav = next(DIAR.glob("*/dev00.wav"))
    cfg, model, count = load_config("general"), ToyEmbedder(), SpeakerCount(max=4)
    pad = cfg.vad.turn_pad_s
    assert pad > 0
    unpadded = dataclasses.replace(cfg, vad=dataclasses.replace(cfg.vad, turn_pad_s=0.0, turn_join_s=0.0))
    source = pipeline.open_source(wav)
    reference = read_rttm(wav.with_suffix(".rttm"))["dev00"]
    for oracle in (None, reference):
        found = pipeline.speech(source, cfg, oracle_vad=oracle)
        embedded = pipeline.embed(source, found, model, cfg)
        clusters = pipeline.label(embedded, cfg, count)
        result = pipeline.assemble(embedded, clusters, cfg)
        plain = pipeline.assemble(embedded, clusters, unpadded)
        covered = rg.from_timeline(result.annotation.get_timeline().support())
        assert np.array_equal(result.regions, found.regions)
        assert np.allclose(rg.from_timeline(plain.annotation.get_timeline().support()), found.regions, atol=0.06)
        if oracle is None:
            assert found.found_by == "pyannote-seg" and len(found.regions) >= 2
            assert np.allclose(covered, rg.pad(found.regions, pad, found.duration))
            assert rg.duration(rg.from_timeline(result.exclusive_annotation.get_timeline())) == pytest.approx(
                rg.duration(covered)
            )
        else:
            assert found.found_by == "oracle"
            assert turns(result.annotation) == turns(plain.annotation)


def test_turns_stay_inside_the_uem_and_a_cache_keeps_it(tmp_path):
    from pyannote.core import Timeline

    from diarize import pipeline
    from diarize.config import SpeakerCount

    from conftest import ToyEmbedder

    require_data()
    wav = next(DIAR.glob("*/dev00.wav"))
    cfg, model = load_config("general"), ToyEmbedder()
    source = pipeline.open_source(wav)
    found = pipeline.speech(source, cfg, uem=Timeline([Segment(5.0, 17.0), Segment(18.1, 40.0)]))
    assert np.array_equal(found.scored, [[5.0, 17.0], [18.1, found.duration]])
    embedded = pipeline.embed(source, found, model, cfg)
    pipeline.save_embedded(embedded, tmp_path / "dev00.npz")
    kept = pipeline.load_embedded(tmp_path / "dev00.npz")
    assert np.array_equal(kept.speech.scored, found.scored)
    result = pipeline.assemble(kept, pipeline.label(kept, cfg, SpeakerCount(max=4)), cfg)
    extent = result.annotation.get_timeline().extent()
    assert extent.start == 5.0 and extent.end <= found.duration
    assert not result.annotation.crop(Segment(17.0, 18.1))  # no turn reaches into the unscored gap
