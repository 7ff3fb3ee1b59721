"""Make a published asv dashboard work without internet.

asv's index.html loads jQuery, flot, Bootstrap and a few plugins from CDNs. This copies
the vendored copies in offline/ into the published folder and points index.html at them:

    asv publish && python offline.py            # from asv_benchmarks/
    python offline.py path/to/html              # another published folder
"""
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# CDN address (as asv 0.6 writes it) -> the vendored file in offline/
VENDORED = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": "jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": "jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": "stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": "bootstrap.min.css",
}


def make_offline(html_dir):
    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    text = index.read_text()
    for url, name in VENDORED.items():
        text = text.replace(url, "vendor/" + name)
    loaded = r'<(?:script[^>]*\ssrc|link[^>]*\shref)="(https?://[^"]+)"'     # not plain links
    external = sorted(set(re.findall(loaded, text)))
    if external:
        raise SystemExit("offline.py: %s loads %s, which has no vendored copy; add it to "
                         "offline/ and VENDORED" % (index, ", ".join(external)))
    (html_dir / "vendor").mkdir(exist_ok=True)
    for name in VENDORED.values():
        shutil.copy(HERE / "offline" / name, html_dir / "vendor" / name)
    # drop integrity/crossorigin attributes meant for the CDN copies
    text = re.sub(r'\s+(integrity|crossorigin)="[^"]*"', "", text)
    index.write_text(text)
    return index


if __name__ == "__main__":
    print("made %s work offline" % make_offline(sys.argv[1] if len(sys.argv) > 1 else HERE / ".asv" / "html"))
