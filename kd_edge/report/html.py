"""Render the report blocks as one self-contained HTML page: inline CSS, every image embedded as base64 PNG,
no external resource of any kind (it can be mailed or attached to a CI run as a single file)."""
import base64
import html
import re
from pathlib import Path

from kd_edge.errors import KdEdgeError

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{border-bottom:1px solid #eee;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f4f4f4}td:not(:first-child){text-align:right}tr:nth-child(even) td{background:#fafafa}
code{background:#f2f2f2;padding:0 .25em;border-radius:3px;font-size:.92em}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
"""


def _inline(text):
    """Escape, then the little markdown the report uses: `code`, **bold**, [text](link)."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', out)
    return out


def _data_uri(path):
    path = Path(path)
    try:
        payload = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise KdEdgeError(f"{path}: the report references this figure but it cannot be read ({exc})") from exc
    return f"data:image/png;base64,{payload}"


def render(blocks, image_dir, title="kd-edge evaluation report") -> str:
    """HTML text; ``image_dir`` is the folder the blocks' image names are relative to."""
    body = []
    for block in blocks:
        if block.kind == "h":
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif block.kind == "p":
            body.append(f"<p>{_inline(block.text)}</p>")
        elif block.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif block.kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block.kind == "img":
            uri = _data_uri(Path(image_dir) / block.src)
            alt = html.escape(block.text)
            body.append(f'<figure><img src="{uri}" alt="{alt}"><figcaption>{alt} ({html.escape(block.src)})'
                        "</figcaption></figure>")
        else:
            raise ValueError(f"unknown block kind {block.kind!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
