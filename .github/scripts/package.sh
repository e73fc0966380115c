#!/usr/bin/env bash
# Builds the Function App package in DIR (default build/functionapp): the tracked files that
# .funcignore does not leave out, and the Linux wheels of requirements.txt in
# .python_packages/lib/site-packages, as the Python worker expects them. deploy.yml zips DIR;
# tests/test_package.py builds the same DIR and imports function_app from it in a clean venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg=${1:-build/functionapp}
python=${PYTHON:-python3}

if [ ! -f requirements.txt ]; then
  echo "requirements.txt is missing: run 'make requirements' and commit it" >&2
  exit 1
fi
rm -rf "$pkg"
mkdir -p "$pkg"
# Tracked files minus those .funcignore matches (git applies the same gitignore rules as Core Tools).
comm -23 <(git ls-files --cached | sort) \
         <(git ls-files --cached --ignored --exclude-from=.funcignore | sort) \
  | while IFS= read -r path; do
      [ -f "$path" ] || continue  # deleted in the work tree but not yet committed
      mkdir -p "$pkg/$(dirname "$path")"
      cp -p "$path" "$pkg/$path"
    done
# Linux x86-64 wheels for the Flex Consumption Python 3.11 worker, next to the code.
"$python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
  --target "$pkg/.python_packages/lib/site-packages" -r requirements.txt
find "$pkg" -name __pycache__ -type d -prune -exec rm -rf {} +
"$python" -m compileall -q "$pkg/function_app.py" "$pkg/shared"
echo "package: $pkg ($(find "$pkg" -path "$pkg/.python_packages" -prune -o -type f -print | wc -l) code files)"
