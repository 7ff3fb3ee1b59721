"""Write the README's performance table from a `fastbp bench --peers --json FILE` run:

    python asv_benchmarks/readme_table.py asv_benchmarks/figures/peers-zen4-2026-12-07-products.json

The table goes between the README's two table markers, and the first marker names the
JSON file it came from; tests/test_readme.py checks that the table is that file's, so no
figure in it is typed by hand. Keep the JSON of each run the README quotes in
asv_benchmarks/figures/."""
import json
import re
import sys
from pathlib import Path

from fastbp.bench import peers_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
MARKERS = re.compile(r"(<!-- the table from (\S+), written by asv_benchmarks/readme_table.py -->\n)(.*?)"
                     r"(\n<!-- end of the table -->)", re.S)


def table_in(text):
    """(the JSON file named, the table) of the README text."""
    found = MARKERS.search(text)
    if not found:
        raise ValueError("README.md has no table markers")
    return found.group(2), found.group(3)


def write(figures_path, readme=README):
    figures = json.loads(Path(figures_path).read_text())
    text = readme.read_text()
    table_in(text)
    figures_path = Path(figures_path).resolve()
    try:
        relative = figures_path.relative_to(readme.parent.resolve()).as_posix()
    except ValueError:                      # a run kept outside the repository
        relative = figures_path.as_posix()
    start = "<!-- the table from %s, written by asv_benchmarks/readme_table.py -->\n" % relative
    readme.write_text(MARKERS.sub(lambda m: start + peers_markdown(figures) + m.group(4), text))


if __name__ == "__main__":
    write(sys.argv[1])
