"""Put the opening summary of results/<SETTING>/claims.md into README.md (kdrepro.report.digest).

    python workflow/scripts/readme_digest.py cpu
"""

import sys
from pathlib import Path

from kdrepro.io import save_text
from kdrepro.report.digest import update_readme

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    setting = sys.argv[1]
    claims = Path("results") / setting / "claims.md"
    if not claims.exists():
        sys.exit(f"{claims} does not exist: build the setting's claims target first (snakemake claims --configfile ...)")
    convergence = Path("results") / setting / "tables" / "convergence_table.csv"
    readme = update_readme(Path("README.md"), setting, claims.read_text(),
                           convergence.read_text() if convergence.exists() else None)
    save_text(readme, Path("README.md"))
