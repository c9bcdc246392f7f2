"""The messages actors send each other, one module per conversation: small, immutable, typed.

- ``intake``: a new task or batch, request thread -> dispatcher -> repository -> dispatcher.
- ``running``: an attempt, dispatcher -> worker -> dispatcher, and the states it saves.
- ``waiting``: tasks waiting for their time, dispatcher <-> retry actor.
- ``task_actions``: cancel, retry by hand and delete of one task.
- ``reading``: a task, a page, readiness and statistics, asked by a request thread.
- ``lifecycle``: start, recovery, the store's health, housekeeping and shutdown.
- ``queues``: pausing, resuming and reading the queues, and their rate limits' timer.
- ``schedules``: the schedule actor's questions and its firings.
- ``cluster``: claiming work from a shared PostgreSQL table, queue by queue, waking up for it,
  and the counts and queue states only the database knows.
- ``answers``: what the questions above are answered with.

pykka does not copy messages, so nothing here is mutable except the replies, which exist to be
written once by the actor that answers. Every question asked from outside the actors (by a
request thread, or by the entry object at start and shutdown) carries its own Reply, and so
does every message it becomes on its way between actors: an actor that stops or crashes fails
the replies of what it leaves unanswered (actors/base.py).

A message that a question becomes on its way is named for its hop: a request thread asks the
dispatcher to ``Admit…``, and the dispatcher tells the repository to ``Store…`` what it admitted.
"""
