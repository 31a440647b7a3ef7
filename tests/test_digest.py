"""The README's opening digest of a claims report: made from the report, and the committed copy is current."""

import re

import pytest

from conftest import REPO
from kdrepro.report.digest import digest, marker, update_readme

CLAIMS = """# Claims report, setting `demo`

Demo data, three seeds

How to read the verdicts. ...

## Summary

| paper | claim | verdict | ours | paper's effect | n |
|---|---|---|---|---|---|
| A et al. | x beats y | reproduced | +1.20 | +0.50 (cifar10) | 3 |
| A et al. | z beats y | inconclusive | -0.20 | – | 3 |
| B et al. | u is comparable to v | not equivalent | +3.00 | +0.10 (cifar100) | 3 |
| Own | kd beats at | holds | +0.90 | – | 3 |

![claims](x.png)
"""


def test_the_digest_counts_each_papers_verdicts_and_names_the_decided_claims():
    text = digest("demo", CLAIMS)
    assert text.startswith(marker("demo")) and text.endswith(marker("demo", end=True))
    assert "(setting `demo`: Demo data, three seeds;" in text
    assert "| A et al. | 1 | 0 | 1 |" in text and "| B et al. | 0 | 1 | 0 |" in text and "| Own | 1 | 0 | 0 |" in text
    assert "Reproduced:\n\n- x beats y (A et al.; ours +1.20, paper +0.50 (cifar10), n 3)\n- kd beats at (Own;" in text
    assert "Contradicted:\n\n- u is comparable to v (B et al.;" in text
    assert "Convergence check" not in text


def test_the_digest_says_how_many_scratch_recipes_converged():
    table = "run,accuracy x2,verdict\na,1,converged\nb,1,not converged\nc,1,did not train\nd,1,not converged\n"
    assert "1 of 3 scratch recipes change by less" in digest("demo", CLAIMS, table)


def test_the_digest_goes_after_the_first_paragraph_once_and_is_replaced_after(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nFirst paragraph.\n\n## Next\n\nbody\n")
    once = update_readme(readme, "demo", CLAIMS)
    assert once.startswith("# Title\n\nFirst paragraph.\n\n" + marker("demo")) and once.endswith("## Next\n\nbody\n")
    readme.write_text(once)
    again = update_readme(readme, "demo", CLAIMS.replace("| reproduced |", "| contradicted |"))
    assert again.count(marker("demo")) == 1 and "| A et al. | 0 | 1 | 1 |" in again


@pytest.mark.parametrize("setting", re.findall(r"<!-- claims digest (\S+) start -->", (REPO / "README.md").read_text()))
def test_the_readmes_digest_is_what_the_committed_claims_report_gives(setting):
    readme = (REPO / "README.md").read_text()
    committed = readme[readme.index(marker(setting)):readme.index(marker(setting, end=True)) + len(marker(setting, end=True))]
    convergence = REPO / "results" / setting / "tables" / "convergence_table.csv"
    made = digest(setting, (REPO / "results" / setting / "claims.md").read_text(),
                  convergence.read_text() if convergence.exists() else None)
    assert committed == made, (
        f"README.md's digest of {setting} is not the committed report's: run python workflow/scripts/readme_digest.py {setting}")
