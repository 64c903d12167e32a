"""Several nodes as one: the coordinator they share and the leader-election decision.

``coordinator`` is the interface, ``local`` (a shared SQLite file) and ``etcd`` (etcd v3
through its JSON gateway) implement it, ``election`` decides who leads.
"""
