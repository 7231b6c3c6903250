"""Megatron-LM-compatible LLM pretraining, pip-installable, CPU to many GPUs.

The import name is ``megatron``, as Megatron-LM's, so that users' code (``from megatron.core import
parallel_state``) runs unchanged; the pip name is ``megatron-lite``. NVIDIA's ``megatron-core`` wheel
installs files into the same ``megatron/`` folder, so the two cannot share one environment: the
import is refused with a message when both are there.
"""
__version__ = "0.1.0"


def _refuse_megatron_core() -> None:
    # Cheap (a directory listing, no metadata scan): this runs on every import, tools included.
    import os
    import site
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.exists(os.path.join(here, "core", "package_info.py")):  # megatron-core's own file
        found = True
    else:
        found = False
        for place in {os.path.dirname(here), *site.getsitepackages()}:
            try:
                found = found or any(name.startswith("megatron_core-") and name.endswith(".dist-info")
                                     for name in os.listdir(place))
            except OSError:
                continue
    if found:
        raise ImportError(
            "megatron-lite and NVIDIA's megatron-core are installed in one environment: both provide the "
            "'megatron' package, so their files overwrite each other. Use separate virtual environments, "
            "or `pip uninstall megatron-core megatron-lite` and reinstall the one you want.")


_refuse_megatron_core()
