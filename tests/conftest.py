"""Test set-up: 8 CPU devices, so multi-device code is tested on any machine.

Set before JAX is imported. Single-device references use `jax.devices()[:1]` explicitly.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
