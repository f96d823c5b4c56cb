#!/usr/bin/env bash
# Installs what deeppacket needs on Debian or Ubuntu, as root. Idempotent:
# packages already present are left alone. Says what it does.
#   libtorch-dev           libtorch (C++ headers and libraries) the shim builds against
#   libopenblas0-pthread   a fast BLAS, so libtorch does not fall back to the reference BLAS
#   build-essential        g++ and make for the shim
#   python3-torch          PyTorch, only for the interop tests and benchmarks (no Python in the product)
#   python3-scapy          the reference preprocessing, for tests and benchmarks
#   python3-pandas         reads Parquet in interop tests
# With --check it only reports, by its exit status, whether anything is missing.
set -euo pipefail

packages=(libtorch-dev libopenblas0-pthread build-essential python3-torch python3-scapy python3-pandas)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ "${1:-}" = "--check" ]; then
	[ ${#missing[@]} -eq 0 ] || { echo "install-deps: missing ${missing[*]}"; exit 1; }
	exit 0
fi

if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root (or with sudo) to install ${missing[*]}" >&2
	exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all packages present: ${packages[*]}"
else
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${missing[@]}"
fi

# libtorch links libblas.so.3; make sure it resolves to OpenBLAS.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
*openblas*) echo "install-deps: BLAS is OpenBLAS ($blas)" ;;
*)
	echo "install-deps: switching BLAS to OpenBLAS (was ${blas:-none})"
	update-alternatives --auto libblas.so.3-x86_64-linux-gnu || true
	update-alternatives --auto liblapack.so.3-x86_64-linux-gnu || true
	;;
esac

command -v go >/dev/null || echo "install-deps: Go is not on PATH; install Go 1.24 or newer" >&2
echo "install-deps: done"
