#!/bin/sh
# Prints the accelerator build of JAX to install on this machine: cuda12, cuda13 or tpu.
# $ACCEL, when set, is checked and printed as is. Otherwise: an NVIDIA GPU whose driver
# (nvidia-smi) supports CUDA 13 or later -> cuda13, CUDA 12 -> cuda12; a TPU VM (/dev/accel*,
# or /dev/vfio with the VM's TPU metadata) -> tpu. With none found it says so on stderr and
# exits 1, having installed and created nothing. Used by `make bench-gpu` and `make gpu-check`.
set -u
if [ -n "${ACCEL:-}" ]; then
  case "$ACCEL" in
    cuda12|cuda13|tpu) echo "$ACCEL"; exit 0 ;;
    *) echo "ACCEL must be cuda12, cuda13 or tpu; got '$ACCEL'." >&2; exit 2 ;;
  esac
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
  if [ -n "$cuda" ]; then
    if [ "$cuda" -ge 13 ]; then echo cuda13; else echo cuda12; fi
    exit 0
  fi
fi
if ls /dev/accel* >/dev/null 2>&1; then echo tpu; exit 0; fi
if ls /dev/vfio/[0-9]* >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 && \
   curl -sf --max-time 2 -H "Metadata-Flavor: Google" \
     http://metadata.google.internal/computeMetadata/v1/instance/attributes/accelerator-type \
     >/dev/null 2>&1; then
  echo tpu; exit 0
fi
echo "No accelerator found (no NVIDIA GPU answered nvidia-smi, no TPU device): nothing was" \
     "installed. Run this on a GPU or TPU machine, or name the build with" \
     "ACCEL=cuda12|cuda13|tpu to install it anyway." >&2
exit 1
