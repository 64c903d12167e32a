"""Fault drills: load on a listener, one fault in one server, what the clients saw.

``load`` sends bounded GET load and records every request; ``faults`` injects kill, hang,
slow or flap by pid; ``observe`` reads the proxy's per-server counters; ``scenario`` runs
load, fault and counters together for any proxy; ``report`` turns the recording into the
table and JSON; ``processes`` starts and stops the backends and the node; ``runner`` is
``ninelives drill CONFIG`` from start to end.
"""
