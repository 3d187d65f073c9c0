"""Process-wide settings that must be in place before torch is imported.

On a machine whose cores are shared (another training run, a test suite, a browser), OpenMP's
default wait policy makes each of torch's intra-op threads spin at the end of every parallel
region until its peers arrive. A peer that the kernel has descheduled keeps the others spinning
on the cores that the peer (or the other program) needs: on a 2-core machine an elementwise op
measured 15x slower beside one busy process, and a training step 3-5x slower. ``PASSIVE`` makes
waiting threads sleep instead; alone on the machine it costs little (see ``mmkit bench``'s
``background`` numbers and the README).

:func:`configure` sets it unless the user chose a policy; ``import mmkit`` calls it, so the CLI
and library users importing mmkit before torch both get it. OpenMP reads the variable once, when
torch loads it, so it cannot change a process where torch is already imported.
"""

from __future__ import annotations

import os
import sys

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
SET_BY_MMKIT: set[str] = set()  # the keys of DEFAULTS that configure() put in (not the user)


def configure() -> bool:
    """Put :data:`DEFAULTS` into the environment (never overriding a value the user set).
    Returns whether they can still take effect here (torch not yet imported)."""
    for key, value in DEFAULTS.items():
        if key not in os.environ:
            os.environ[key] = value
            SET_BY_MMKIT.add(key)
    return "torch" not in sys.modules
