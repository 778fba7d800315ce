"""Where events come from and what they earn: dataset readers and the reward join (impressions to
the feedback that followed them). The event schema itself is in `liverec.core.schema`."""
