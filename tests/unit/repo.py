"""Where the checkout is, for tests that read its files (README, docs, examples, the package source): a constant
here, so a test file can move between the folders that mirror src/normlab without counting parents."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "normlab"
