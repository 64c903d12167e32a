"""Several nodes as one: the coordinator they share and the leader-election decision.

``coordinator`` is the interface, ``local`` (a shared SQLite file) and ``etcd`` (etcd v3
through its JSON gateway) implement it, ``connect`` opens the configured one, ``election``
decides who leads.
"""
