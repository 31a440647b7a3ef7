"""`python -m kdrepro.catalog_build`: the facts of every registered model, loss and gate, as JSON on stdout.

kdrepro.catalog runs it in a child process, once per code version, and caches what it prints; importing the
registries here (torch) is the reason it is a module of its own.
"""

import json

import kdrepro.losses  # noqa: F401  (registers the losses and gates)
import kdrepro.models.zoo  # noqa: F401  (registers the architectures)
from kdrepro.catalog import REGISTERED, as_json

if __name__ == "__main__":
    print(json.dumps(as_json(REGISTERED), sort_keys=True))
