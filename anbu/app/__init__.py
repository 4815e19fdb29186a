"""The composition root: the only place that builds adapters from settings and wires them.

Every process is built here: ``anbu serve`` / ``anbu run`` (:func:`~anbu.app.processes.serve`),
the dispatch worker (``python -m scheduler.worker`` ->
:func:`~anbu.app.processes.dispatch_worker`), the outbox worker (``python -m escalation.worker``
-> :func:`~anbu.app.processes.outbox_worker`), the one-off ``anbu call``
(:func:`~anbu.app.processes.one_call`) and the HTTP API (:func:`~anbu.app.parts.build_api`).
The core (the rest of ``anbu/``) never imports ``ivr``, ``scheduler`` or ``escalation``; this
package may (tests/test_architecture.py checks both rules).
"""
