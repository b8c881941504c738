"""An example xtasks plugin; its tasks live in :mod:`xtasks_example.tasks`."""
