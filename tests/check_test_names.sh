#!/bin/sh
# catch_discover_tests splits a Catch2 test name at ";": the half-name matches no test
# case and still counts as passed, so such a test silently never runs. Lists every
# TEST_CASE name holding ";" under the given directory and fails if there is one.
dir=${1:?usage: check_test_names.sh DIR}
if grep -rnE --include='*.cpp' 'TEST_CASE[(]"[^"]*;' "$dir"; then
    echo "test names above hold ';': ctest would never run them" >&2
    exit 1
fi
exit 0
