"""The ``task-queue`` command: ``python main.py`` for a project of one's own, started from its
directory (``cd myproject && TASK_HANDLER=myjobs.work:run task-queue``).

Its own module, with a name no project will have, rather than ``main:run``: every worker process
runs the command's script again (multiprocessing re-imports the parent's ``__main__``), with the
project's directory on sys.path ahead of what is installed; a script importing ``main`` would
there import the project's own ``main.py``, if it has one.
"""

from __future__ import annotations


def run() -> None:
    """Serve as ``python main.py`` does."""
    # Imported only here, when the command runs: never in a worker process.
    import main

    main.run()
