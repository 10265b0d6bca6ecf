# Sourced by scripts/test and scripts/demo: make .venv from the package registries.
# PYTHON picks the interpreter (default python3, 3.10 or newer); VENV the folder.
# pip is upgraded once, when the venv is made; the package and the test tools (pinned by
# constraints/test.txt) are installed again only when pyproject.toml or the pins change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
PIP=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "${PIP[@]}" install --upgrade pip
fi
stamp="$VENV/.menda-installed"
want="$(cat pyproject.toml constraints/test.txt | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "${PIP[@]}" install -c constraints/test.txt -e ".[test]"
    printf '%s' "$want" > "$stamp"
fi
