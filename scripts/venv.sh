# Sourced by scripts/install.sh and scripts/python: which virtual environment this
# checkout's commands use. One rule: the active one ($VIRTUAL_ENV), else .venv here.
# The system interpreter is never used: installing there could change packages that
# other programs on the machine depend on.
target_venv() {
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    echo "$VIRTUAL_ENV"
  else
    echo "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv"
  fi
}
