"""Pool and disk health: scrubs, TRIM, SMART and the fill forecast.

Pure parts: ``status`` (zpool status as data), ``smart`` (smartctl's JSON as
data), ``forecast`` (when a pool fills up) and ``checks`` (the verdicts);
``job`` follows a scrub or trim to its end; ``runs`` is what the CLI starts
and the journal keeps.
"""
