"""The ground floor: the data types every other layer shares and the rules that define them.

`schema` (events and items), `rewards` (what an event is worth), `vocab` and `catalog` (item id <->
row), `features` (a sequence's per-position side features), `sequence` (the engagement rule: one
position per engagement), `state` (live per-user state), `split` (sequences and the leave-one-out
split) and `metrics` (full ranking and its metrics). Nothing here imports from another layer.
"""
