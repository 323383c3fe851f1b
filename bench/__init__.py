"""``make bench``: our servers and their peers measured side by side, on the same machine, in
the same run. ``python -m bench`` runs it; ``bench/results/latest.md`` is what it writes."""
