#!/bin/sh
# Byte-compile what was just installed (the root filesystem may be read-only at run time, so
# Python could not write .pyc files then), after dropping what a server never imports: the test
# suites that numpy, scipy, pandas, scikit-learn and others ship (tens of MB).
set -eu
venv=$1
site=$(echo "$venv"/lib/python3*/site-packages)
for package in numpy scipy pandas sklearn xgboost google grpc pyarrow matplotlib; do
  [ -d "$site/$package" ] || continue
  find "$site/$package" -depth -type d \( -name tests -o -name testing_data \) \
       -path "*/$package/*" -exec rm -rf {} +
done
"$venv/bin/python" -m compileall -q -j 0 "$site" >/dev/null || true
