"""Batches side by side on CPU (`models.base.map_batches`): results in order, the same as one at a time,
torch's thread count given back, and a share set meanwhile kept."""

import threading
import time

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from diarize.config import WindowConfig
from diarize.fast_embeddings import embed_scales_fast
from diarize.models.base import limit_threads, map_batches
from diarize.spans import Batching
from diarize.windows import multiscale_windows

from test_fast_embeddings import speech

CPU = torch.device("cpu")


@pytest.fixture
def threads():
    """Set torch's threads for the test; the count before it comes back after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_results_come_in_order_from_two_workers(threads):
    threads(2)
    seen = set()

    def slow(i: int) -> tuple[int, bool, int]:
        seen.add(threading.get_ident())
        time.sleep(0.02 * (i % 3 == 0))  # later batches finish first
        return i, torch.is_inference_mode_enabled(), torch.get_num_threads()

    out = list(map_batches(slow, range(12), CPU))
    assert [i for i, _, _ in out] == list(range(12))
    assert all(inference for _, inference, _ in out)  # the workers' own grad mode
    assert {n for _, _, n in out} == {1} and len(seen) == 2  # two workers on one thread each
    assert torch.get_num_threads() == 2

    threads(1)  # one thread: one batch at a time, on the caller's thread
    seen.clear()
    assert [i for i, _, _ in map_batches(slow, range(4), CPU)] == list(range(4))
    assert seen == {threading.get_ident()}


def test_a_failing_batch_raises_and_gives_the_threads_back(threads):
    threads(2)

    def fail_at_3(i: int) -> int:
        if i == 3:
            raise ValueError("batch 3")
        return i

    got = []
    with pytest.raises(ValueError, match="batch 3"):
        for i in map_batches(fail_at_3, range(10), CPU):
            got.append(i)
    assert got == [0, 1, 2] and torch.get_num_threads() == 2


def test_a_share_set_during_the_batches_is_kept(threads):
    threads(4)
    results = []
    with threadpool_limits(limits=None):  # every pool's threads as they were, after the test
        for i in map_batches(lambda i: i, range(6), CPU):
            results.append(i)
            if i == 2:
                limit_threads(1)  # as cores.CoreShare does between batches
        assert results == list(range(6)) and torch.get_num_threads() == 1


def test_fast_embeddings_do_not_depend_on_the_workers(campplus, threads):
    # Two workers on one thread each compute every chunk exactly as one thread does.
    audio = speech(40.0)
    regions = np.array([[0.0, 14.0], [14.5, 31.0], [31.5, 40.0]])
    scales = multiscale_windows(regions, WindowConfig())
    batching = Batching(seconds=16.0)
    threads(1)
    alone = embed_scales_fast(audio, regions, scales, campplus, batching=batching, local_context_s=1.5)
    threads(2)
    side_by_side = embed_scales_fast(audio, regions, scales, campplus, batching=batching, local_context_s=1.5)
    for a, b in zip(alone, side_by_side):
        np.testing.assert_array_equal(a, b)
