"""Uptime: what happened to every server, pool, provider, listener and node, durably, and
the availability it adds up to over any window.

- :mod:`~ninelives.uptime.store` records state intervals and request counts in SQLite, off
  the event loop: the node's side queues them and sends them in batches
  (:mod:`~ninelives.uptime.wire`) to a writer process (:mod:`~ninelives.uptime.writer`),
  which applies them (:mod:`~ninelives.uptime.ledger`); :mod:`~ninelives.uptime.schema`
  has the tables and the reads;
- :mod:`~ninelives.uptime.recorder` is the node's side: what it records and when;
- :mod:`~ninelives.uptime.availability` (pure) turns intervals into availability,
  incidents, MTBF and MTTR; :mod:`~ninelives.uptime.maintenance` (pure) says when planned
  maintenance windows are; :mod:`~ninelives.uptime.nines` (pure) is the arithmetic of nines;
- :mod:`~ninelives.uptime.report` builds ``GET /v1/uptime``; :mod:`~ninelives.uptime.api`
  answers it, ``GET /v1/slo`` and ``GET /status``;
- :mod:`~ninelives.uptime.slo` (pure) decides error budgets and burn-rate alerts,
  :mod:`~ninelives.uptime.slo_report` measures SLOs from the store,
  :mod:`~ninelives.uptime.watch` evaluates them on the node and sends alerts and incidents
  to :mod:`~ninelives.uptime.webhooks`;
- :mod:`~ninelives.uptime.status_page` (pure) renders the HTML status page.
"""
