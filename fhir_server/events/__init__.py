"""Events: the transactional outbox (``outbox``), its worker (``worker``) and the
handlers (``handlers``).

A write that matters to someone (a QuestionnaireResponse to score, a follow-up to plan
from) leaves an outbox row in the same database transaction as the resource itself
(ARCHITECTURE.md, "the path of a write"): a crash between commit and delivery loses
nothing. The worker claims rows, runs their handler and marks them done -- the handler's
writes and the mark in one transaction, so an event's effects happen exactly once.
"""
