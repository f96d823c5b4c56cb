#!/usr/bin/env bash
# Installs what deeppacket needs on Debian or Ubuntu, as root. Idempotent:
# what is already present is left alone. Says what it does.
#
# Debian's packages:
#   build-essential        g++ and make for the shim
#   python3-venv           makes the project's virtual environment .venv
#   libtorch-dev           Debian's libtorch 1.13, the second libtorch the shim is built and tested against
#   libopenblas0-pthread   a fast BLAS for Debian's libtorch (else it falls back to the reference BLAS)
#   python3-torch          Debian's PyTorch 1.13, the parity reference for that build
#   python3-scapy          scapy 2.5, the reference preprocessing as the reference ran it
#   python3-pandas         reads Parquet with Debian's Python
#   libpcap-dev            libpcap, which `deeppacket live` captures with (cgo: headers to build, library to run)
#   tcpreplay              replays captures onto a veth for live's tests and `make bench-live`
#   iproute2               `ip netns` and veth pairs for the same
#   libgloo-dev            Gloo's headers, which libtorch's c10d headers include (PyTorch's wheel
#                          has Gloo inside libtorch_cpu but ships no gloo/ headers)
# PyPI, into .venv at the repository root (requirements.txt, pinned): PyTorch 2.x,
# whose torch package ships the include/ and lib/ the shim is built against by
# default, pytorch-lightning 2.x, the newest scapy, safetensors, onnxruntime and
# pyarrow, for the tests and benchmarks (no Python in the product).
# With --check it only reports, by its exit status, whether anything is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential python3-venv libtorch-dev libopenblas0-pthread python3-torch python3-scapy python3-pandas libpcap-dev tcpreplay iproute2 libgloo-dev)
venv=.venv
stamp=$venv/.requirements.txt

# venv_current: .venv exists and holds what requirements.txt pins.
venv_current() { [ -x "$venv/bin/python" ] && cmp -s requirements.txt "$stamp"; }

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ "${1:-}" = "--check" ]; then
	venv_current || missing+=("$venv (requirements.txt)")
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

if venv_current; then
	echo "install-deps: $venv holds requirements.txt"
else
	echo "install-deps: installing requirements.txt into $venv (PyTorch 2.x from PyPI: a few GB)"
	[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
	"$venv/bin/pip" install --disable-pip-version-check --progress-bar off -q -r requirements.txt
	cp requirements.txt "$stamp"
fi
"$venv/bin/python" -c 'import torch; print("install-deps: PyTorch", torch.__version__, "in", torch.__path__[0])'

command -v go >/dev/null || echo "install-deps: Go is not on PATH; install Go 1.24 or newer" >&2
echo "install-deps: done"
