#!/usr/bin/env bash
# Validates action.yml and every .github/workflows/*.yml against SchemaStore's schemas for
# GitHub Actions and workflows. check-jsonschema ships those schemas, so validating needs no
# network; installing it (into .ci/.venv, beside the moto that scripts/test.sh puts there) does.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.ci/.venv
if [ ! -x "$venv/bin/check-jsonschema" ]; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'check-jsonschema==0.39.0'
fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-actions action.yml
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
