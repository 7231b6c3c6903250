"""The project's commands (console scripts and tools/*.py): each a ``main(argv=None)`` here or in
the package part it belongs to, run under :func:`megatron.cli.guard.main_guard`."""
