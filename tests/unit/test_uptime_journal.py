"""The uptime store's journal: the node's side of every event, gathered by entity."""

from __future__ import annotations

import threading

from ninelives.uptime.journal import Journal
from ninelives.uptime.wire import CLOSE_ITEM, EVENT, FLUSH, SAMPLE, STATES

SAMPLED = (SAMPLE, 5.0, (("server", "app/a1", (1, 0, 0, 0, 0, 0)),))


def test_transitions_are_gathered_by_entity_between_the_other_items_in_order() -> None:
    journal = Journal()
    assert not journal.ready.is_set()
    journal.event(1.0, "server", "app/a1", "up", "down", "2 checks failed")
    assert journal.ready.is_set()
    journal.event(2.0, "server", "app/a2", "up", "down", "2 checks failed")
    journal.event(3.0, "pool", "web", "up", "down", "no server")
    journal.event(3.0, "listener", "web", "listening", "closed", "closed")
    journal.event(4.0, "server", "app/a1", "down", "up", "2 checks passed")
    journal.event(4.5, "node", "lb-1", "config 0", "config 1", "reloaded")
    journal.event(5.0, "server", "app/a1", "up", "down", "timeout")
    journal.put(SAMPLED)
    journal.put((FLUSH, 7))
    journal.event(6.0, "server", "app/a1", "down", "up", "ok")
    items, count = journal.take()
    assert count == 9  # eight events and the sample; the flush is not recorded
    assert items == [
        (STATES, {"server": {"app/a1": ([1.0, 4.0], ["down", "up"],
                                        ["2 checks failed", "2 checks passed"]),
                             "app/a2": ([2.0], ["down"], ["2 checks failed"])},
                  "pool": {"web": ([3.0], ["down"], ["no server"])},
                  "listener": {"web": ([3.0], ["closed"], ["closed"])}}),
        (EVENT, 4.5, "node", "lb-1", "config 0", "config 1", "reloaded"),
        (STATES, {"server": {"app/a1": ([5.0], ["down"], ["timeout"])}}),
        SAMPLED,
        (FLUSH, 7),
        (STATES, {"server": {"app/a1": ([6.0], ["up"], ["ok"])}}),
    ]
    assert not journal.ready.is_set()
    assert journal.take() == ([], 0) and journal.count == 0
    # What is taken is the feeder's: later events go in a gathering of their own.
    journal.event(7.0, "server", "app/a1", "up", "down", "x")
    assert items[-1] == (STATES, {"server": {"app/a1": ([6.0], ["up"], ["ok"])}})
    assert journal.take() == ([(STATES, {"server": {"app/a1": ([7.0], ["down"], ["x"])}})], 1)


def test_the_last_item_is_kept_and_later_ones_dropped_and_discard_drops_all() -> None:
    journal = Journal()
    journal.event(1.0, "server", "app/a1", "up", "down", "x")
    journal.put(CLOSE_ITEM, last=True)
    journal.event(2.0, "server", "app/a1", "down", "up", "y")
    journal.put(SAMPLED)
    assert journal.take() == ([(STATES, {"server": {"app/a1": ([1.0], ["down"], ["x"])}}),
                               CLOSE_ITEM], 1)
    other = Journal()
    other.event(1.0, "server", "app/a1", "up", "down", "x")
    other.discard()
    other.put(SAMPLED)
    assert other.take() == ([], 0) and other.count == 0


def test_producers_on_many_threads_and_a_taker_lose_and_reorder_nothing() -> None:
    journal = Journal()
    per_thread = 20_000
    taken: list[tuple[object, ...]] = []
    done = threading.Event()

    def produce(n: int) -> None:
        for k in range(per_thread):
            journal.event(float(k), "server", f"app/s{n}", "?", "up" if k % 2 else "down",
                          "r")
            if k % 5000 == 0:
                journal.put(SAMPLED)

    def take() -> None:
        while not done.is_set():
            journal.ready.wait(0.01)
            taken.extend(journal.take()[0])
        taken.extend(journal.take()[0])

    taker = threading.Thread(target=take)
    taker.start()
    producers = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    taker.join(10)
    assert not taker.is_alive()
    starts: dict[str, list[float]] = {}
    samples = 0
    for item in taken:
        if item[0] == SAMPLE:
            samples += 1
            continue
        assert item[0] == STATES
        for entity, (at, states, reasons) in item[1]["server"].items():  # type: ignore[index]
            assert len(at) == len(states) == len(reasons)
            starts.setdefault(entity, []).extend(at)
    assert samples == 4 * 4
    assert starts == {f"app/s{n}": [float(k) for k in range(per_thread)] for n in range(4)}
