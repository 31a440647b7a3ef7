"""One module per paper; each turns its experiment file into runs and targets.

A paper module provides `build(registry, experiment, paper_values)` and `claims(results)`.
"""

from kdrepro.papers import takd
from kdrepro.papers import tfkd
from kdrepro.papers import cckd
from kdrepro.papers import ktg
from kdrepro.papers import fitnets

PAPERS = {"takd": takd, "tfkd": tfkd, "cckd": cckd, "ktg": ktg, "fitnets": fitnets}
