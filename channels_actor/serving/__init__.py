"""``channels-actor serve``: one port served by several worker processes.

- :mod:`.command`: the command line; loads the endpoint once to check it, then
  hands over to the supervisor.
- :mod:`.supervision`: the parent process: starts the workers, restarts the
  ones that die, forwards SIGTERM and SIGINT and waits out the grace.
- :mod:`.worker`: one worker's life: load the endpoint, listen with
  ``SO_REUSEPORT``, say it is serving, drain on a signal.
- :mod:`.loading`, :mod:`.signals`, :mod:`.logs`: what both processes share.

The package imports none of them: ``python -m channels_actor.serving.worker``
must run a module that nothing imported before it.
"""

from __future__ import annotations

__all__: list[str] = []
